"""Submitting a job of any kind (service/platform/job_kinds.py): the one way the API, the tools and the
benchmarks that feed workers create jobs.

`JobQueues.submit` does, for every kind: 1. under the queue cap when the kind has one (the depth check and
the enqueue under a Redis lock shared by all API processes, so 12 parallel requests against a cap of 5
admit exactly 5), 2. the job's record (`JobStore.create`), 3. its rq job: the kind's function and failure
callback by dotted path, its timeout and retries, and how long rq keeps its outcome.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry

from service.platform.contract import QUEUES
from service.platform.job_kinds import JobKind
from service.platform.jobstore import JobStore
from service.platform.redis_keys import ENQUEUE_LOCK
from service.platform.settings import Settings
from service.platform.webhooks import WebhookSpec

LOCK_POLL_S = 0.002  # the lock is held for two Redis round trips: redis-py's default 0.1 s poll added 100 ms steps


class QueueFull(Exception):
    """The kind's queue holds `max_queue_depth` jobs: retry later (the API answers 503 `queue_full`)."""


class JobQueues:
    """The rq queues, and the submit of a job of any kind onto its own."""

    def __init__(self, redis: Redis, jobs: JobStore, settings: Settings) -> None:
        self.redis, self.jobs, self.settings = redis, jobs, settings
        self.queues = {name: Queue(name, connection=redis) for name in QUEUES}

    def queue(self, kind: JobKind) -> Queue:
        return self.queues[kind.queue]

    def check_room(self, kind: JobKind) -> None:
        """QueueFull when a capped kind's queue is full: the cheap check before any work (`submit` checks
        again, atomically)."""
        if kind.capped and self.queue(kind).count >= self.settings.max_queue_depth:
            raise QueueFull(kind.queue)

    def submit(
        self, kind: JobKind, payload: Any, owner: str, options: dict[str, Any], callback: WebhookSpec | None = None
    ) -> None:
        """Record and queue the job `payload` (a `kind.payload` with its `job_id`) for `owner` (an API key
        id); `options`: what its record shows of the request; `callback`: its webhook. Blocking (Redis):
        call it from a worker thread in the API. QueueFull when a capped kind's queue is full."""
        if not isinstance(payload, kind.payload):
            raise TypeError(f"a {kind.name} job takes a {kind.payload.__name__}, not {type(payload).__name__}")
        if not kind.capped:
            self._record_and_enqueue(kind, payload, owner, options, callback)
            return
        with self.redis.lock(ENQUEUE_LOCK, timeout=10, sleep=LOCK_POLL_S, blocking_timeout=10):
            self.check_room(kind)
            self._record_and_enqueue(kind, payload, owner, options, callback)

    def _record_and_enqueue(
        self, kind: JobKind, payload: Any, owner: str, options: dict[str, Any], callback: WebhookSpec | None
    ) -> None:
        self.jobs.create(payload.job_id, owner, kind.name, options, callback)
        retries = kind.retries(self.settings)
        ttl_s = self.settings.result_ttl_s
        self.queue(kind).enqueue(
            kind.function,
            payload.model_dump(),
            job_id=payload.job_id,
            job_timeout=kind.timeout_s(self.settings, payload),
            result_ttl=ttl_s,
            failure_ttl=ttl_s,
            retry=Retry(max=retries) if retries else None,
            on_failure=Callback(kind.on_failure),
        )
