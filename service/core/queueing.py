"""Putting a job on its rq queue, the one way the API (and a benchmark feeding workers directly) does it."""

from __future__ import annotations

from typing import Any

from rq import Callback, Queue, Retry


def enqueue_job(
    queue: Queue, function: str, callback: str, payload: Any, *, timeout_s: int, retries: int, ttl_s: int
) -> None:
    """Queue a job function by its contract path (the API never imports worker code), with its failure
    callback (also a contract path), its timeout, its rq retries (re-runs after a worker crash, at once)
    and how long rq keeps its outcome. `payload`: the job's pydantic payload, with its `job_id`."""
    queue.enqueue(
        function,
        payload.model_dump(),
        job_id=payload.job_id,
        job_timeout=timeout_s,
        result_ttl=ttl_s,
        failure_ttl=ttl_s,
        retry=Retry(max=retries) if retries else None,
        on_failure=Callback(callback),
    )
