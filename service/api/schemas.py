"""Response bodies of the API (request fields are form fields, declared on the routes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(examples=["no_face"])
    message: str = Field(examples=["no human face was found in the image"])
    request_id: str | None = Field(None, examples=["4f1c2d…"])


def null_is_none(value: object) -> object:
    """Multipart has no null: clients (and OpenAPI tooling) send an optional field as "null" or ""."""
    return None if isinstance(value, str) and value in ("null", "") else value


# Every /v1 operation documents the error answers it can give (the body is always an ErrorBody).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body could not be parsed (malformed multipart)"},
    401: {"model": ErrorBody, "description": "no or unknown API key"},
    403: {"model": ErrorBody, "description": "needs an operator key"},
    404: {"model": ErrorBody, "description": "unknown style or job (also another client's job)"},
    409: {"model": ErrorBody, "description": "conflict: not ready, no result, duplicate name"},
    413: {"model": ErrorBody, "description": "body or image too large"},
    415: {"model": ErrorBody, "description": "not a JPEG, PNG or WebP image"},
    422: {"model": ErrorBody, "description": "invalid field, or a photo without a usable face"},
    429: {"model": ErrorBody, "description": "rate limited (see Retry-After)"},
    503: {"model": ErrorBody, "description": "queue full or job store unavailable (see Retry-After)"},
}


class NotReady(ErrorBody):
    status: str = Field(examples=["queued", "running"])


class JobLinks(BaseModel):
    self: str
    result: str


class WebhookDelivery(BaseModel):
    event: str
    attempt: int = Field(description="1 for the first try")
    at: float
    status: int | None = Field(None, description="the receiver's HTTP status (None: no answer)")
    error: str | None = None
    seconds: float
    outcome: str = Field(examples=["delivered", "retrying", "gave_up", "refused"])


class WebhookState(BaseModel):
    url: str
    events: list[str]
    deliveries: list[WebhookDelivery] = []


class JobStatus(BaseModel):
    id: str
    kind: str = "stylize"
    status: str = Field(examples=["queued", "running", "succeeded", "failed", "canceled"])
    attempts: int = Field(
        0, description="how many times a worker has started the job (more than 1 after a worker crash)"
    )
    position: int | None = Field(None, description="place in the queue (0 = next) while queued")
    stage: str | None = None
    progress: float = 0.0
    detail: dict[str, Any] | None = Field(None, description="video jobs: frames done, total, eta_s")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    options: dict[str, Any] = {}
    result: dict[str, Any] | None = Field(None, description="branch used, image size, timings, once succeeded")
    error: ErrorBody | None = None
    webhook: WebhookState | None = Field(None, description="the job's callback and its delivery log, when it has one")
    links: JobLinks


class StyleOut(BaseModel):
    id: str
    name: str
    description: str
    status: str
    resolution: int | None
    attribute_branches: list[str]
    default_branch: str | None
    model_class: str | None
    provenance: dict[str, Any]
    created_at: str
    labels: list[str]
    training: dict[str, Any] | None = Field(None, description="live progress while training; summary when ready")
    error: dict[str, Any] | None = None
    encoder: str = Field("base", description="the encoder this style is served through (its pairing)")
    controls: dict[str, Any] | None = Field(
        None,
        description="style-strength controls of POST /v1/stylize (structure, strength: default and range); "
        "null when the style has no source generator or is attribute-aware",
    )
    preview: str | None = Field(
        None, description="operators: the URL of the style's preview grid, once one is drawn (else null)"
    )


class StyleDeleted(BaseModel):
    id: str
    status: str = Field(examples=["canceled", "canceling", "retired", "removed"])


class StyleList(BaseModel):
    styles: list[StyleOut]


class QueueReadiness(BaseModel):
    workers: int = Field(description="live workers listening on this queue")
    depth: int = Field(description="jobs waiting")
    required: bool = Field(description="whether this readiness check needs a worker on it")


class Readiness(BaseModel):
    ready: bool
    redis: str = Field(examples=["ok", "unavailable: ConnectionError"])
    queues: dict[str, QueueReadiness] = {}
    reasons: list[str] = Field([], description="why not ready (empty when ready)")
