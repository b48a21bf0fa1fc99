"""Idempotency keys of job-creating requests, reserved before any work (`Reservation`).

The first request with a key reserves it with SET NX before it decodes anything; a concurrent duplicate
waits (asynchronously) for the first to finish and replays its job; if the first fails, the reservation is
dropped so the client may retry. A key whose job record has expired is treated as unused (it used to replay
a `queued` job that then answered 404). The queue cap is the submit's (service/platform/queueing.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from service.api.errors import ApiError

PENDING = "pending"
WAIT_FOR_FIRST_S = 30.0


@dataclass
class Reservation:
    redis: Redis
    key: str  # the Redis key of the reservation
    fingerprint: str
    ttl_s: int
    owned: bool = False

    async def acquire(self, job_exists: Callable[[str], bool]) -> str | None:
        """Reserve the key (returns None: go on and create the job) or return the job id to replay."""
        deadline = time.monotonic() + WAIT_FOR_FIRST_S
        while True:
            if self.redis.set(self.key, json.dumps({"state": PENDING, "fp": self.fingerprint}), nx=True, ex=120):
                self.owned = True
                return None
            stored = self.redis.get(self.key)
            if stored is None:
                continue  # released between our SET and GET: try again
            record = json.loads(stored)
            if record["fp"] != self.fingerprint:
                raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
            if record.get("state") != PENDING:
                if job_exists(record["job_id"]):
                    return record["job_id"]
                self.redis.delete(self.key)  # its job expired: the key is free again
                continue
            if time.monotonic() > deadline:
                raise ApiError(
                    409,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is still being processed",
                    {"Retry-After": "2"},
                )
            await asyncio.sleep(0.05)

    def complete(self, job_id: str) -> None:
        if self.owned:
            self.redis.set(
                self.key, json.dumps({"state": "done", "job_id": job_id, "fp": self.fingerprint}), ex=self.ttl_s
            )

    def release(self) -> None:
        """The request failed before a job existed: let a retry with the same key proceed."""
        if self.owned:
            self.redis.delete(self.key)
            self.owned = False
