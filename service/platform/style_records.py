"""A style's record in Redis (issue 27), for deployments on several machines.

On one machine a style's record is its `style.json` in the registry folder. With a remote object store
the hosts' registry folders are caches, and a style is pending, training, failed or canceled long
before it has a bundle to publish: its record (the fields of style.json: name, status, job id, error,
training summary, …) lives in one Redis hash, `agilegan:styles` (field: the style id, value: the JSON
record). Every API and worker reads it, so a status change on any host is seen by all at their next read,
and a style is listed everywhere from the moment its upload is accepted. The weights still travel as
bundles (service/platform/registry_sync.py); a ready style's bundle carries its style.json too.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from service.platform.redis_keys import STYLES_KEY


class StyleRecords:
    """get / put / delete / all of style records in one Redis hash."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def get(self, style_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(STYLES_KEY, style_id)
        return _parse(raw)

    def all(self) -> dict[str, dict[str, Any]]:
        found = {}
        for key, raw in self.redis.hgetall(STYLES_KEY).items():
            record = _parse(raw)
            if record is not None:
                found[key.decode() if isinstance(key, bytes) else key] = record
        return found

    def put(self, style_id: str, meta: dict[str, Any]) -> None:
        self.redis.hset(STYLES_KEY, style_id, json.dumps({**meta, "id": style_id}))

    def delete(self, style_id: str) -> None:
        self.redis.hdel(STYLES_KEY, style_id)


def _parse(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
