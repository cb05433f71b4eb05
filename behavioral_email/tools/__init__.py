from .batch import can_commit, run_isolated
