"""The worker side of each job kind of service/platform/job_kinds.py: one module per kind, named as the kind,
with `run(payload)` (the job function rq calls) and `on_failure(...)` (its rq failure callback)."""
