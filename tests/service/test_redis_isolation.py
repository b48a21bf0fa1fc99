"""Hardening finding 16: the tests never flush a Redis they did not start.

The old fixture used DB 13 of whatever Redis answered at 127.0.0.1:6379 and flushed it around every
test (a developer's data, or a second test run's jobs, went with it).
"""

from __future__ import annotations

import os
import uuid

import pytest
from redis import Redis

from workers.launcher.redis_server import redis_answers

SHARED = "redis://127.0.0.1:6379/13"


@pytest.fixture
def sentinel() -> str | None:
    """A key in the machine's own Redis (when one runs), written before the test's fixtures flush."""
    if not redis_answers(SHARED):
        return None
    key = f"agilegan-test-sentinel:{uuid.uuid4().hex}"
    Redis.from_url(SHARED).set(key, "keep", ex=60)
    return key


@pytest.mark.skipif("AGILEGAN_TEST_REDIS_URL" in os.environ, reason="a Redis was named explicitly")
def test_the_suite_uses_its_own_redis(sentinel: str | None, redis: Redis, redis_url: str) -> None:
    assert redis_url != SHARED and not redis_url.startswith("redis://127.0.0.1:6379/")
    redis.set("x", "1")
    redis.flushdb()  # what every test's fixture does
    if sentinel is not None:
        assert Redis.from_url(SHARED).get(sentinel) == b"keep"
        Redis.from_url(SHARED).delete(sentinel)
