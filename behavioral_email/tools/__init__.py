from .batch import (
    BatchWork,
    backoff_sleep,
    can_commit,
    is_concurrency_error,
    process_in_batches,
    run_isolated,
    shared_rows_env,
)
