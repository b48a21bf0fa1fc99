"""FastAPI dependencies: the shared resources on app.state, and the caller's identity."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from rq import Queue

from service.api.errors import ApiError
from service.core.auth import Principal, bearer_key, refusal_message
from service.core.contract import STYLIZE_QUEUE, metrics_key
from service.core.jobstore import JobStore
from service.core.registry import Registry
from service.core.settings import Settings
from service.core.storage import Storage

log = logging.getLogger("agilegan.api")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


def get_stylize_queue(request: Request) -> Queue:
    return request.app.state.queues[STYLIZE_QUEUE]


# Declares the bearer scheme in the OpenAPI document (so /docs can send a key); the key itself is
# checked below, and already from the headers by the AuthGate middleware before any body is read.
bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer KEY`")


def authenticate(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None
) -> Principal:
    settings: Settings = request.app.state.settings
    if settings.auth_disabled:
        return Principal("anonymous", "operator")
    known = request.scope.get("state", {}).get("principal")  # checked from the headers by AuthGate
    if known is not None:
        return known
    header = request.headers.get("authorization", "")
    key = bearer_key(header)
    principal = request.app.state.keys.authenticate(key) if key else None
    if principal is None:
        raise ApiError(401, "unauthorized", refusal_message(header), {"WWW-Authenticate": "Bearer"})
    return principal


def require_operator(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if not principal.is_operator:
        raise ApiError(403, "forbidden", "this endpoint needs an operator key")
    return principal


# Sliding-window limiter, atomic in Redis: drop entries older than the window, refuse when full
# (returning the oldest entry's time for Retry-After), else record this request.
_RATE_LIMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1] - 60)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], 120)
return false
"""


def charge_rate_limit(request: Request, principal: Principal) -> None:
    """At most `rate_limit_per_minute` requests per key in any 60 s (shared by every API process).

    Called by the handler once the request has passed its cheap checks: a request refused before any
    work (unknown style, invalid form, a replayed idempotency key, a 429) costs nothing of the budget;
    one that reached the image decoder counts, whatever the photo turns out to be.
    """
    limit = request.app.state.settings.rate_limit_per_minute
    if limit <= 0:
        return
    now = time.time()
    script = request.app.state.redis.register_script(_RATE_LIMIT)
    oldest = script(keys=[metrics_key(f"rate:{principal.key_id}")], args=[now, limit, f"{now}:{uuid.uuid4().hex}"])
    if oldest is not None:
        retry = max(1, int(float(oldest) + 60 - now) + 1)
        raise ApiError(
            429, "rate_limited", f"more than {limit} requests per minute for this key", {"Retry-After": str(retry)}
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
StorageDep = Annotated[Storage, Depends(get_storage)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
StylizeQueueDep = Annotated[Queue, Depends(get_stylize_queue)]
ClientDep = Annotated[Principal, Depends(authenticate)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
