from .batch import run_isolated
