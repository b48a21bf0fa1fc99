"""Completion callbacks (issue 28): a job's webhook, its due deliveries in Redis, the signing secret of each
key, and the delivery log a job shows.

A job created with `webhook` (a URL) and `webhook_events` keeps both in its record. When the job reaches an
event it subscribed to, the job store's transition (service/platform/jobstore.py) adds a delivery to the sorted
set `agilegan:webhooks` in the same Redis call, due now: a transition and its delivery are never one without
the other, and a job's worker never waits for the receiver. The senders (workers/webhook_sender.py, threads
of every worker process) claim due deliveries with a lease (a claimed one becomes due again after LEASE_S,
so a sender killed mid-delivery loses nothing), POST the job's public record, and either finish it or set it
due again after an exponential backoff, until `retry_window_s` after the event.

The body is signed: `X-AgileGAN-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
secret of the key that created the job (`GET /v1/whoami` shows it; `PUT /v1/whoami/webhook-secret` sets or
rotates it; an operator rotates any key's). A receiver checks the HMAC and that `t` is recent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from service.platform.contract import JobState
from service.platform.redis_keys import WEBHOOKS_DUE_KEY, webhook_key, webhook_secret_key

EVENTS = ("completed", "failed", "canceled", "progress")
DEFAULT_EVENTS = ("completed", "failed", "canceled")
EVENT_OF_STATUS = {JobState.SUCCEEDED: "completed", JobState.FAILED: "failed", JobState.CANCELED: "canceled"}
LEASE_S = 60  # a claimed delivery is due again after this (its sender died)
LOG_LIMIT = 50  # deliveries kept in a job's log


def parse_events(text: str) -> tuple[str, ...]:
    """ "completed,failed" → the events, in EVENTS order; ValueError for an unknown one or none."""
    wanted = {e.strip() for e in text.split(",") if e.strip()}
    unknown = wanted - set(EVENTS)
    if unknown or not wanted:
        raise ValueError(f"webhook_events: expected some of {', '.join(EVENTS)}, got {text!r}")
    return tuple(e for e in EVENTS if e in wanted)


@dataclass(frozen=True)
class WebhookSpec:
    """A job's callback: its URL (checked by service/platform/outbound.check_url) and the events it wants."""

    url: str
    events: tuple[str, ...] = DEFAULT_EVENTS


@dataclass(frozen=True)
class Delivery:
    """One due delivery: the job, the event, when the event happened (as written), the attempts made so far.
    Its member in the sorted set is "job|event|first_at|attempt" (the job store's scripts write it too)."""

    job_id: str
    event: str
    first_at: str
    attempt: int = 0

    @property
    def member(self) -> str:
        return f"{self.job_id}|{self.event}|{self.first_at}|{self.attempt}"

    @property
    def age_s(self) -> float:
        return time.time() - float(self.first_at)

    @classmethod
    def parse(cls, member: bytes | str) -> Delivery:
        text = member.decode() if isinstance(member, bytes) else member
        job_id, event, first_at, attempt = text.split("|")
        return cls(job_id, event, first_at, int(attempt))


_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then return false end
redis.call('ZADD', KEYS[1], ARGV[2], due[1])
return due[1]
"""


class WebhookQueue:
    """The due deliveries (a sorted set scored by when each is due)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(_CLAIM)

    def schedule(self, delivery: Delivery, at: float | None = None) -> None:
        self.redis.zadd(WEBHOOKS_DUE_KEY, {delivery.member: time.time() if at is None else at})

    def claim(self, lease_s: float = LEASE_S) -> Delivery | None:
        """A due delivery, leased to the caller: due again after `lease_s` unless finished or rescheduled."""
        now = time.time()
        member = self._claim(keys=[WEBHOOKS_DUE_KEY], args=[now, now + lease_s])
        return Delivery.parse(member) if member else None

    def finish(self, delivery: Delivery) -> None:
        self.redis.zrem(WEBHOOKS_DUE_KEY, delivery.member)

    def retry(self, delivery: Delivery, at: float) -> Delivery:
        """The next attempt of `delivery`, due at `at` (replacing the leased one, atomically)."""
        following = Delivery(delivery.job_id, delivery.event, delivery.first_at, delivery.attempt + 1)
        with self.redis.pipeline() as p:
            p.zrem(WEBHOOKS_DUE_KEY, delivery.member)
            p.zadd(WEBHOOKS_DUE_KEY, {following.member: at})
            p.execute()
        return following

    def pending(self) -> int:
        return int(self.redis.zcard(WEBHOOKS_DUE_KEY))


class WebhookSecrets:
    """The signing secret of each API key (by key id), made on first use."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def get(self, key_id: str) -> str:
        key = webhook_secret_key(key_id)
        self.redis.set(key, "whsec_" + secrets.token_hex(24), nx=True)
        return self.redis.get(key).decode()

    def set(self, key_id: str, secret: str | None = None) -> str:
        """Set (or, without `secret`, rotate to a new random) secret; the new one."""
        value = secret or "whsec_" + secrets.token_hex(24)
        self.redis.set(webhook_secret_key(key_id), value)
        return value


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-AgileGAN-Signature header's value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300, now: float | None = None) -> bool:
    """A receiver's check of a signature header (what the README shows receivers)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


def record_delivery(redis: Redis, job_id: str, entry: dict[str, Any], ttl_s: int) -> None:
    key = webhook_key(job_id)
    with redis.pipeline() as p:
        p.rpush(key, json.dumps(entry))
        p.ltrim(key, -LOG_LIMIT, -1)
        p.expire(key, ttl_s)
        p.execute()


def deliveries(redis: Redis, job_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in redis.lrange(webhook_key(job_id), 0, -1)]
