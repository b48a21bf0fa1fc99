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
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from rq import Callback, Retry

from service.contract import FIT_DIRECTION_FUNCTION, JOB_FAILURE_CALLBACK, STYLE_ID, TRAIN_QUEUE, FitDirectionJob
from service.deps import ClientDep, JobsDep, OperatorDep, RegistryDep, StorageDep
from service.errors import ApiError
from service.exemplar_uploads import ArchiveLimits, check_exemplar, open_archive, too_few
from service.registry import Registry
from service.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/v1", tags=["directions"], responses=ERROR_RESPONSES)
MIN_PER_CLASS = 4  # the fit's floor; 20+ per class give a usable accuracy estimate
FIT_TIMEOUT_S = 3600


def _public(meta: dict[str, Any], registry: Registry) -> dict[str, Any]:
    styles = [
        s.id for s in registry.styles() if s.status == "ready" and registry.w_space(s.encoder) == meta.get("w_space")
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
    request: Request,
    principal: OperatorDep,
    registry: RegistryDep,
    storage: StorageDep,
    jobs: JobsDep,
    name: Annotated[str, Form(pattern=STYLE_ID.pattern, description="the direction's id, e.g. smile")],
    positive: Annotated[UploadFile, File(description="a zip of photos with the attribute")],
    negative: Annotated[UploadFile, File(description="a zip of photos without it")],
    encoder: Annotated[str, Form(pattern=STYLE_ID.pattern, description="the encoder whose w space to fit in")] = "base",
) -> JSONResponse:
    settings = request.app.state.settings
    # 1. The name is free, the encoder exists.
    if registry.direction(name) is not None:
        raise ApiError(409, "duplicate_name", f"a direction {name!r} exists; DELETE it first")
    if not registry.has_encoder(encoder):
        raise ApiError(422, "unknown_encoder", f"no encoder {encoder!r} in the registry")
    # 2. Each photo through the face finder; accepted ones staged (one in memory at a time).
    limits = ArchiveLimits(
        max_total=settings.max_style_upload_bytes,
        max_entry=settings.max_upload_bytes,
        max_files=settings.max_style_files,
    )
    staging = storage.style_staging_dir()
    report: list[dict] = []
    try:
        for label, upload in (("positive", positive), ("negative", negative)):
            zipped, entries = await anyio.to_thread.run_sync(open_archive, upload.file, limits)
            try:
                for entry in entries:
                    row, data = await check_exemplar(
                        request.app.state.faces, entry, limits.max_entry, settings.max_pixels, settings.min_face_size
                    )
                    row["label"] = label
                    if data is not None:
                        await anyio.to_thread.run_sync(storage.stage_file, staging, len(report), data)
                    report.append(row)
            finally:
                zipped.close()
    except BaseException:
        storage.discard_staging(staging)
        raise
    public = [{k: v for k, v in r.items() if k != "landmarks"} for r in report]
    counts = {label: sum(r["accepted"] and r["label"] == label for r in report) for label in ("positive", "negative")}
    if min(counts.values()) < MIN_PER_CLASS:
        storage.discard_staging(staging)
        message = f"usable photos {counts}; at least {MIN_PER_CLASS} of each are needed"
        return too_few(request, "too_few_examples", message, public)
    # 3. Store and enqueue on the train queue.
    accepted = [i for i, r in enumerate(report) if r["accepted"]]
    job_id = uuid.uuid4().hex
    upload_id = f"direction-{job_id[:12]}"
    rows = [report[i] for i in accepted]
    manifest = {"files": [{"name": r["file"], "label": r["label"], "landmarks": r["landmarks"]} for r in rows]}
    storage.publish_staging(staging, upload_id, accepted, manifest)
    jobs.create(job_id, principal.key_id, "fit_direction", {"direction": name, "encoder": encoder})
    payload = FitDirectionJob(job_id=job_id, name=name, upload_id=upload_id, encoder=encoder)
    request.app.state.queues[TRAIN_QUEUE].enqueue(
        FIT_DIRECTION_FUNCTION,
        payload.model_dump(),
        job_id=job_id,
        job_timeout=FIT_TIMEOUT_S,
        result_ttl=settings.result_ttl_s,
        failure_ttl=settings.result_ttl_s,
        retry=Retry(max=3),
        on_failure=Callback(JOB_FAILURE_CALLBACK),  # recorded once no retry is left
    )
    body = {"id": name, "job_id": job_id, "status": "queued", **counts, "files": public}
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})
