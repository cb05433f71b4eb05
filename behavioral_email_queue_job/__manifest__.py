{
    "name": "Behavioral Email on Job Queue",
    "summary": "Run the behavioral email batches as queue jobs, shared by the job "
               "runners of several servers",
    "version": "18.0.1.0.0",
    "category": "Marketing/Email Marketing",
    "license": "LGPL-3",
    "author": "behavioral_email",
    "website": "https://github.com/behavioral-email/behavioral_email",
    "depends": ["behavioral_email", "queue_job"],
    "data": [
        "data/queue_job_channel_data.xml",
        "data/queue_job_function_data.xml",
    ],
    "auto_install": True,
}
