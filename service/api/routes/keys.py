"""The caller's key: who it is (`GET /v1/whoami`, what the console shows) and its webhook signing secret
(service/platform/webhooks.py), which the client sets or rotates and an operator rotates for any key."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import BeforeValidator, Field

from service.api.deps import ClientDep, OperatorDep, WebhookSecretsDep
from service.api.errors import ApiError
from service.api.schemas import ERROR_RESPONSES, null_is_none

router = APIRouter(prefix="/v1", tags=["keys"], responses=ERROR_RESPONSES)


@router.get("/whoami", summary="The caller's key id, role and webhook signing secret")
def whoami(principal: ClientDep, secrets: WebhookSecretsDep) -> dict[str, str]:
    secret = secrets.get(principal.key_id)
    return {"key_id": principal.key_id, "role": principal.role, "webhook_secret": secret}


@router.put("/whoami/webhook-secret", summary="Set, or rotate to a new random one, your webhook secret")
def set_webhook_secret(
    principal: ClientDep,
    secrets: WebhookSecretsDep,
    secret: Annotated[
        Annotated[str, Field(min_length=16, max_length=200)] | None,
        BeforeValidator(null_is_none),
        Form(description="at least 16 characters; omitted: a new random secret"),
    ] = None,
) -> dict[str, str]:
    """Deliveries from now on are signed with the new secret (one already signed keeps the old one)."""
    return {
        "key_id": principal.key_id,
        "webhook_secret": secrets.set(principal.key_id, secret),
    }


@router.post("/keys/{key_id}/webhook-secret", summary="Rotate a key's webhook secret (operator)")
def rotate_webhook_secret(key_id: str, _: OperatorDep, secrets: WebhookSecretsDep) -> dict[str, str]:
    if not re.fullmatch(r"[0-9a-f]{16}", key_id):
        raise ApiError(422, "invalid_request", "key_id: the 16 hex digits GET /v1/whoami shows")
    return {"key_id": key_id, "webhook_secret": secrets.set(key_id)}
