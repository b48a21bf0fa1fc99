"""Dynamic batching of stylize jobs across requests, with rq's own semantics per job.

When a stylize worker takes a job and more stylize jobs wait on its queue, it claims up to
`max_batch − 1` more with rq's own `Queue.dequeue_any` (waiting at most `batch_wait_ms` for more, and
not at all when the queue is empty at that moment) and registers every claimed job's execution (so each
has its heartbeat, and a worker killed mid-batch leaves every job to rq's abandoned-job recovery). Then
`workers.serving.stylize_pipeline.prepare` takes the batch through its steps (crops in the CPU pool, the networks
once per group of jobs sharing a style and a request, encoding in the pool), and each job runs through
rq's `perform_job` as usual: its function finds its image prepared (or its own error), and stores it and
records success on its own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import Queue
from rq.job import Job

from service.platform.job_kinds import STYLIZE, kind_of_function

log = logging.getLogger("agilegan.worker")
POLL_S = 0.001


def claim_more(worker: Any, queue: Queue, limit: int, wait_s: float) -> list[tuple[Job, Queue]]:
    """Up to `limit` more jobs from `queue` through rq's dequeue (no queue of our own): at once when
    they wait, for at most `wait_s` more while they keep coming, never when the queue is empty now."""
    claimed: list[tuple[Job, Queue]] = []
    deadline = time.monotonic() + wait_s
    while len(claimed) < limit:
        got = Queue.dequeue_any(
            [queue], None, connection=worker.connection, job_class=worker.job_class, serializer=worker.serializer
        )
        if got is not None:
            claimed.append(got)
            continue
        if not claimed or time.monotonic() >= deadline:
            break  # an empty queue: the job in hand does not wait
        time.sleep(POLL_S)
    return claimed


def batchable(job: Job) -> bool:
    """A stylize job (queued by today's path or an earlier one)."""
    return kind_of_function(job.func_name) is STYLIZE
