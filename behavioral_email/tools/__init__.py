from .batch import can_commit, is_concurrency_error, process_in_batches, run_isolated
