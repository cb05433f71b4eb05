from .batch_job import (
    CHANNEL,
    enqueue_batch_jobs,
    get_channel_capacity,
    identity_key,
    jobs_stalled,
    retry_on_concurrency,
    run_batch_job,
    use_jobs,
)
