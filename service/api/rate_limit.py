"""Each API key's request budget: a sliding window of 60 s in Redis, shared by every API process."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from redis import Redis

from service.api.errors import ApiError
from service.platform.auth import Principal
from service.platform.redis_keys import metrics_key

# Drop entries older than the window, refuse when full (returning the oldest entry's time for Retry-After),
# else record this request; atomic in Redis.
_RATE_LIMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1] - 60)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], 120)
return false
"""


@dataclass(frozen=True)
class RateBudget:
    """At most `per_minute` requests per key in any 60 s (0: no limit)."""

    redis: Redis
    per_minute: int

    def charge(self, principal: Principal) -> None:
        """Count one request of `principal`'s key, or 429 `rate_limited` with a Retry-After. Blocking (Redis).

        Called by the handler once the request has passed its cheap checks: a request refused before any
        work (unknown style, invalid form, a replayed idempotency key, a 429) costs nothing of the budget;
        one that reached the image decoder counts, whatever the photo turns out to be.
        """
        limit = self.per_minute
        if limit <= 0:
            return
        now = time.time()
        script = self.redis.register_script(_RATE_LIMIT)
        key = metrics_key(f"rate:{principal.key_id}")
        oldest = script(keys=[key], args=[now, limit, f"{now}:{uuid.uuid4().hex}"])
        if oldest is not None:
            retry = max(1, int(float(oldest) + 60 - now) + 1)
            raise ApiError(
                429, "rate_limited", f"more than {limit} requests per minute for this key", {"Retry-After": str(retry)}
            )
