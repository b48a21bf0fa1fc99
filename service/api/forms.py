"""The form fields that several job-creating routes take, declared once (their validation and docs)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from fastapi import Form
from pydantic import BeforeValidator, Field

from service.api.errors import ApiError
from service.api.schemas import null_is_none
from service.api.style_policy import SIZES
from service.platform.outbound import OutboundPolicy, UrlInvalid, allowed, check_url
from service.platform.settings import Settings
from service.platform.webhooks import DEFAULT_EVENTS, WebhookSpec, parse_events

StyleField = Annotated[
    str, Form(min_length=1, max_length=64, description="style id (GET /v1/styles)", examples=["demo"])
]
SizeField = Annotated[
    int, Form(description="side of the aligned result: 256, 512 or 1024", json_schema_extra={"enum": SIZES})
]
StructureField = Annotated[
    Annotated[int, Field(ge=0, le=8)] | None,
    BeforeValidator(null_is_none),
    Form(
        description="layer swap: keep the photo's structure up to 2^(k+2) px (0 = off; "
        "default: the style's, see its `controls`)",
    ),
]
StrengthField = Annotated[
    float,
    Form(
        ge=0.0, le=1.0, description="style strength: 1 = the style, 0 = the photo's reconstruction (quantised to 0.05)"
    ),
]
EditsField = Annotated[
    Annotated[str, Field(max_length=4000)] | None,
    BeforeValidator(null_is_none),
    Form(
        description='latent edits, JSON: direction id (or id:INDEX) → alpha, or → {"alpha": a, "layers": "A-B"}; '
        "GET /v1/directions lists them",
        examples=['{"smile": 1.5, "sefa:3": -2}'],
    ),
]
OutputField = Annotated[Literal["aligned", "full"], Form(description="the aligned crop, or pasted back")]
FacesField = Annotated[
    Literal["one", "all"],
    Form(description="one: the face_index-th face; all: every face of the photo (with output=full)"),
]


def group_option(faces: str, output: str) -> dict[str, str]:
    """The job option of `faces=all` ({} for one face). A group is pasted back into the photo: with
    output=aligned there is no single image to return, so the pair is refused (422)."""
    if faces == "one":
        return {}
    if output != "full":
        raise ApiError(422, "faces_need_full_output", "faces=all returns the whole photo: use output=full")
    return {"faces": "all"}


WebhookField = Annotated[
    Annotated[str, Field(max_length=2048)] | None,
    BeforeValidator(null_is_none),
    Form(description="a URL to POST the job's record to on its events (signed: X-AgileGAN-Signature)"),
]
WebhookEventsField = Annotated[
    str, Form(max_length=200, description="comma-separated: completed, failed, canceled, progress")
]
WEBHOOK_EVENTS_DEFAULT = ",".join(DEFAULT_EVENTS)  # the `webhook_events` of a request that names none


def webhook_spec(settings: Settings, url: str | None, events: str) -> WebhookSpec | None:
    """The job's callback, checked (422 `invalid_webhook`, `webhook_refused` for an address given as a
    non-public IP, `invalid_webhook_events`); host names are checked when each delivery resolves them."""
    if not url:
        return None
    try:
        _, host, _, _ = check_url(url)
    except UrlInvalid as e:
        raise ApiError(422, "invalid_webhook", f"webhook: {e}") from None
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None and not allowed(literal, OutboundPolicy.from_cidrs(settings.webhook_allow)):
        raise ApiError(422, "webhook_refused", f"webhook: {literal} is not a public address")
    try:
        return WebhookSpec(url, parse_events(events))
    except ValueError as e:
        raise ApiError(422, "invalid_webhook_events", str(e)) from None
