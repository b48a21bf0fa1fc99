"""FastAPI dependencies: the shared resources the app factory put on `app.state`, and the caller's identity.

Routes get what they use through these `Annotated` aliases alone (no route reads `app.state`), and pass plain
values to the helpers they call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service.api.errors import ApiError
from service.api.faces import FaceFinder
from service.api.job_views import JobViews
from service.api.rate_limit import RateBudget
from service.platform.auth import Principal, bearer_key, refusal_message
from service.platform.jobstore import JobStore
from service.platform.queueing import JobQueues
from service.platform.registry import Registry
from service.platform.registry_sync import RegistryMirror
from service.platform.settings import Settings
from service.platform.storage import Storage
from service.platform.webhooks import WebhookSecrets

log = logging.getLogger("agilegan.api")


def _shared(name: str) -> Callable[[Request], Any]:
    """The dependency that gives the app's shared resource `name` (an attribute the app factory set on
    `app.state`; its type is the alias's, below)."""

    def shared(request: Request) -> Any:
        return getattr(request.app.state, name)

    shared.__name__ = f"get_{name}"
    return shared


def get_request_id(request: Request) -> str:
    """The request's id (service/api/middleware.py), which error bodies and job views carry."""
    return request.state.request_id


def get_job_views(
    request_id: Annotated[str, Depends(get_request_id)],
    redis: Annotated[Redis, Depends(_shared("redis"))],
    jobs: Annotated[JobStore, Depends(_shared("jobs"))],
) -> JobViews:
    return JobViews(redis, jobs, request_id)


def get_rate_budget(
    redis: Annotated[Redis, Depends(_shared("redis"))], settings: Annotated[Settings, Depends(_shared("settings"))]
) -> RateBudget:
    return RateBudget(redis, settings.rate_limit_per_minute)


def get_webhook_secrets(redis: Annotated[Redis, Depends(_shared("redis"))]) -> WebhookSecrets:
    return WebhookSecrets(redis)


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


SettingsDep = Annotated[Settings, Depends(_shared("settings"))]
JobsDep = Annotated[JobStore, Depends(_shared("jobs"))]
StorageDep = Annotated[Storage, Depends(_shared("storage"))]
RegistryDep = Annotated[Registry, Depends(_shared("registry"))]
RedisDep = Annotated[Redis, Depends(_shared("redis"))]
AsyncRedisDep = Annotated[AsyncRedis, Depends(_shared("aredis"))]  # long-polls: no thread held
MirrorDep = Annotated[RegistryMirror, Depends(_shared("mirror"))]
FacesDep = Annotated[FaceFinder, Depends(_shared("faces"))]
JobQueuesDep = Annotated[JobQueues, Depends(_shared("job_queues"))]
RequestIdDep = Annotated[str, Depends(get_request_id)]
JobViewsDep = Annotated[JobViews, Depends(get_job_views)]
RateBudgetDep = Annotated[RateBudget, Depends(get_rate_budget)]
WebhookSecretsDep = Annotated[WebhookSecrets, Depends(get_webhook_secrets)]
ClientDep = Annotated[Principal, Depends(authenticate)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
