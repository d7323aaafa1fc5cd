"""Batch jobs (issue #22): churn scoring, churn retraining and knowledge ingests run outside the
request and the CLI, with status and progress any process can read.

One interface, two queues: `submit(kind, params)` writes our own `jobs` row (jobs/records.py) and
hands its id to the queue. On PostgreSQL the queue is procrastinate (jobs/queue.py) and
`valuechain worker` runs the jobs; on the SQLite default a thread in the submitting process runs
them, one at a time. Either way the job itself (jobs/run.py) reports progress into the same row.
Layering: jobs/ calls tools/ and knowledge/ (the work) and crm/ (the row); api/ and the CLI call it.
"""
