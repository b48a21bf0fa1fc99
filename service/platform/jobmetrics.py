"""Job latency by stage and failures by code, kept in Redis hashes that /metrics renders."""

from __future__ import annotations

from redis import Redis

from service.platform.redis_keys import metrics_key

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def observe(redis: Redis, durations: dict[str, float]) -> None:
    """Add one observation per stage to the cumulative histogram `stage_seconds`."""
    with redis.pipeline() as p:
        for stage, seconds in durations.items():
            for bound in BUCKETS:
                if seconds <= bound:
                    p.hincrby(metrics_key("stage_seconds"), f"{stage}|bucket|{bound}", 1)
            p.hincrby(metrics_key("stage_seconds"), f"{stage}|bucket|+Inf", 1)
            p.hincrbyfloat(metrics_key("stage_seconds"), f"{stage}|sum", seconds)
            p.hincrby(metrics_key("stage_seconds"), f"{stage}|count", 1)
        p.execute()


def count_failure(redis: Redis, code: str) -> None:
    redis.hincrby(metrics_key("failures"), code, 1)
