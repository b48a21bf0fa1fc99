"""Latent directions for editing: list them (clients), fit one from two photo sets or delete one (operators).

A direction set lives in the w space of one base mapping (`w_space`); `styles` lists the ready styles
it can edit (those served through an encoder with that mapping). Fitting runs on the `train` queue:
both archives' photos are checked here (a face each, as style exemplars are), the worker aligns and
inverts them, fits InterFaceGAN's linear boundary and writes `directions/<id>.npz`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse

from service.api.deps import (
    ClientDep,
    FacesDep,
    JobQueuesDep,
    OperatorDep,
    RegistryDep,
    RequestIdDep,
    SettingsDep,
    StorageDep,
)
from service.api.errors import ApiError
from service.api.exemplar_uploads import (
    Uploads,
    manifest_of,
    open_archive,
    public_report,
    stage_exemplars,
    too_few,
    upload_limits,
)
from service.api.forms import WEBHOOK_EVENTS_DEFAULT, WebhookEventsField, WebhookField, webhook_spec
from service.api.schemas import ERROR_RESPONSES
from service.platform.contract import STYLE_ID, FitDirectionJob, JobState, StyleState
from service.platform.job_kinds import FIT_DIRECTION
from service.platform.registry import Registry

router = APIRouter(prefix="/v1", tags=["directions"], responses=ERROR_RESPONSES)
MIN_PER_CLASS = 4  # the fit's floor; 20+ per class give a usable accuracy estimate


def _public(meta: dict[str, Any], registry: Registry) -> dict[str, Any]:
    styles = [
        s.id
        for s in registry.styles()
        if s.status == StyleState.READY and registry.w_space(s.encoder) == meta.get("w_space")
    ]
    keys = ("id", "name", "kind", "count", "style_dim", "per_layer", "w_space", "layers", "alpha_range", "info")
    return {**{k: meta.get(k) for k in keys}, "styles": styles}


@router.get("/directions", summary="Latent directions a stylize request may use in `edits`")
def list_directions(_: ClientDep, registry: RegistryDep) -> dict[str, Any]:
    return {"directions": [_public(m, registry) for m in registry.directions()]}


@router.get("/directions/{direction_id}", summary="One direction set")
def get_direction(direction_id: str, _: ClientDep, registry: RegistryDep) -> dict[str, Any]:
    meta = registry.direction(direction_id) if STYLE_ID.fullmatch(direction_id) else None
    if meta is None:
        raise ApiError(404, "unknown_direction", f"no direction {direction_id!r}")
    return _public(meta, registry)


@router.delete("/directions/{direction_id}", summary="Delete a direction set (operator)")
def delete_direction(direction_id: str, _: OperatorDep, registry: RegistryDep) -> dict[str, Any]:
    if not STYLE_ID.fullmatch(direction_id) or registry.direction(direction_id) is None:
        raise ApiError(404, "unknown_direction", f"no direction {direction_id!r}")
    registry.direction_path(direction_id).unlink(missing_ok=True)
    return {"id": direction_id, "deleted": True}


@router.post("/directions", status_code=202, summary="Fit a direction from two labelled photo sets (operator)")
async def fit_direction(
    principal: OperatorDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    registry: RegistryDep,
    storage: StorageDep,
    queues: JobQueuesDep,
    finder: FacesDep,
    name: Annotated[str, Form(pattern=STYLE_ID.pattern, description="the direction's id, e.g. smile")],
    positive: Annotated[UploadFile, File(description="a zip of photos with the attribute")],
    negative: Annotated[UploadFile, File(description="a zip of photos without it")],
    encoder: Annotated[str, Form(pattern=STYLE_ID.pattern, description="the encoder whose w space to fit in")] = "base",
    webhook: WebhookField = None,
    webhook_events: WebhookEventsField = WEBHOOK_EVENTS_DEFAULT,
) -> JSONResponse:
    callback = webhook_spec(settings, webhook, webhook_events)
    # 1. The name is free, the encoder exists.
    if registry.direction(name) is not None:
        raise ApiError(409, "duplicate_name", f"a direction {name!r} exists; DELETE it first")
    if not registry.has_encoder(encoder):
        raise ApiError(422, "unknown_encoder", f"no encoder {encoder!r} in the registry")
    # 2. Each photo through the face finder; accepted ones staged (one in memory at a time).
    staging = storage.style_staging_dir()
    report: list[dict] = []
    try:
        for label, upload in (("positive", positive), ("negative", negative)):
            zipped, entries = await anyio.to_thread.run_sync(open_archive, upload.file, upload_limits(settings))
            try:
                await stage_exemplars(Uploads(finder, storage, settings), staging, entries, report, label)
            finally:
                zipped.close()
    except BaseException:
        storage.discard_staging(staging)
        raise
    counts = {label: sum(r["accepted"] and r["label"] == label for r in report) for label in ("positive", "negative")}
    if min(counts.values()) < MIN_PER_CLASS:
        storage.discard_staging(staging)
        message = f"usable photos {counts}; at least {MIN_PER_CLASS} of each are needed"
        return too_few(request_id, "too_few_examples", message, public_report(report))
    # 3. Store, record and queue on the train queue.
    accepted = [i for i, r in enumerate(report) if r["accepted"]]
    job_id = uuid.uuid4().hex
    upload_id = f"direction-{job_id[:12]}"
    storage.publish_staging(staging, upload_id, accepted, manifest_of(report, accepted))
    payload = FitDirectionJob(job_id=job_id, name=name, upload_id=upload_id, encoder=encoder)
    options = {"direction": name, "encoder": encoder}
    await anyio.to_thread.run_sync(queues.submit, FIT_DIRECTION, payload, principal.key_id, options, callback)
    body = {"id": name, "job_id": job_id, "status": JobState.QUEUED, **counts, "files": public_report(report)}
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})
