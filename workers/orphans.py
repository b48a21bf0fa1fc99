"""Claimed jobs whose worker died before starting them, put back at the front of their queue.

rq's dequeue parks a job in its queue's intermediate list until the job starts. A batching worker
claims several jobs at once and registers an execution for each (workers/serving/batching.py); when it is
killed, those executions expire with their heartbeat, but rq recovers only *started* jobs from the
started registry and leaves the others to its intermediate-list cleanup, which acts a minute after
it first sees them (plus a maintenance interval). Here, on every maintenance pass, a job is requeued
when it is (1) in the intermediate list, (2) absent from the started registry and (3) still queued,
in two passes at least `after_s` apart: a live worker registers its claims within milliseconds of
taking them, so a claim missing that long has nobody holding it. Requeuing is one LREM per job, so
with several workers running the pass, one of them wins and the job is pushed back once.
"""

from __future__ import annotations

import logging
import time

from rq import Queue
from rq.job import JobStatus

from service.platform.job_kinds import kind_of_function
from service.platform.redis_keys import orphan_seen_key

log = logging.getLogger("agilegan.worker")


def requeue_orphaned_claims(queue: Queue, after_s: float) -> list[str]:
    """Requeue `queue`'s orphaned claims (see the module docs); returns their ids."""
    redis = queue.connection
    intermediate = queue.intermediate_queue
    claimed = intermediate.get_job_ids()
    if not claimed:
        return []
    started = set(queue.started_job_registry.get_job_ids())
    now, requeued = time.time(), []
    for job_id in claimed:
        mark = orphan_seen_key(job_id)
        if job_id in started:
            redis.delete(mark)
            continue
        seen = redis.get(mark)
        if seen is None:
            redis.set(mark, now, ex=int(10 * after_s) + 60)
            continue
        if now - float(seen) < after_s:
            continue
        job = queue.fetch_job(job_id)
        if (
            job is not None
            and job.get_status(refresh=True) == JobStatus.QUEUED
            and redis.lrem(intermediate.key, 1, job_id)
        ):
            queue.push_job_id(job_id, at_front=True)
            requeued.append(job_id)
            kind = kind_of_function(job.func_name)
            name = kind.name if kind is not None else "an unknown"
            log.warning("requeued %s job %s: claimed by a worker that died before starting it", name, job_id)
        redis.delete(mark)  # a started job is rq's to recover (abandoned-job handling, with its retries)
    return requeued
