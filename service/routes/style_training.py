"""Operators create styles: upload exemplars → a training job on the `train` queue; cancel or retire."""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BeforeValidator
from redis import Redis
from rq import Callback, Retry

from models.configs import ConfigError, TransferConfig
from service.contract import (
    QUEUED,
    STYLE_ID,
    TRAIN_FAILURE_CALLBACK,
    TRAIN_FUNCTION,
    TRAIN_QUEUE,
    TrainJob,
    style_cancel_key,
    style_progress_key,
)
from service.deps import JobsDep, OperatorDep, RegistryDep, StorageDep
from service.errors import ApiError
from service.exemplar_uploads import ArchiveLimits, Entry, bounded_reader, check_exemplar, open_archive, too_few
from service.registry import Registry
from service.schemas import ERROR_RESPONSES, StyleDeleted, null_is_none
from service.storage import Storage
from service.style_policy import DELETED

router = APIRouter(prefix="/v1", tags=["styles"], responses=ERROR_RESPONSES)
TRAIN_RETRIES = 10  # each worker crash or redeploy (SIGTERM: checkpoint, re-queue) uses one


def style_id_for(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64]
    if not STYLE_ID.fullmatch(slug):
        raise ApiError(422, "invalid_name", "the name needs at least one letter or digit")
    return slug


MAX_JSON_FIELD = 64 * 1024
REUSABLE = ("canceled", "failed")  # styles whose name a new upload may take


def _claim_name(registry: Registry, storage: Storage, redis: Redis, style_id: str) -> None:
    """409 while a style of this id is pending, training, ready or retired; a canceled or failed one
    (nothing servable) is removed, with what is left of it (uploads, its cancel flag, its progress),
    so that its name can be used again."""
    info = registry.style(style_id)
    if info is not None and info.status not in REUSABLE:
        raise ApiError(409, "duplicate_name", f"a style {style_id!r} already exists ({info.status})")
    if info is not None:
        registry.remove_style(style_id)
    storage.delete_style_upload(style_id)  # left by a canceled run, or by an upload cut off mid-publish
    progress = style_progress_key(style_id)
    redis.delete(style_cancel_key(style_id), progress, progress + ":curve")


def json_object(text: str, field: str, code: str) -> dict:
    """A form field holding a JSON object, or a 422 with `code`: malformed, not an object, too large or
    nested too deeply (json raised RecursionError, a 500, on 100,000 nested brackets)."""
    if len(text) > MAX_JSON_FIELD:
        raise ApiError(422, code, f"{field}: at most {MAX_JSON_FIELD} characters")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ApiError(422, code, f"{field}: nested too deeply") from None
    except ValueError as e:
        raise ApiError(422, code, f"{field}: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise ApiError(422, code, f"{field}: expected a JSON object")
    return value


@router.post("/styles", status_code=202, summary="Train a new style from exemplar images (operator)")
async def create_style(
    request: Request,
    principal: OperatorDep,
    registry: RegistryDep,
    storage: StorageDep,
    jobs: JobsDep,
    name: Annotated[str, Form(min_length=1, max_length=80)],
    files: Annotated[list[UploadFile], File(description="exemplar images")] = [],  # noqa: B006
    archive: Annotated[
        UploadFile | None, BeforeValidator(null_is_none), File(description="a zip; first-level folders are labels")
    ] = None,
    description: Annotated[str, Form(max_length=2000)] = "",
    config: Annotated[str, Form(description="JSON object of TransferConfig overrides")] = "{}",
    labels: Annotated[str, Form(description='JSON {"file name": "attribute label"}; overrides zip folders')] = "{}",
) -> JSONResponse:
    settings = request.app.state.settings
    # 1. Name, id, config overrides.
    style_id = style_id_for(name)
    _claim_name(registry, storage, request.app.state.redis, style_id)
    overrides = json_object(config, "config", "invalid_config")
    try:
        TransferConfig().with_overrides({"minutes": settings.train_minutes, **overrides})
    except (ValueError, ConfigError, TypeError) as e:
        raise ApiError(422, "invalid_config", f"config: {e}") from e
    # 2. Every exemplar through the aligner (detection and landmarks; the worker renders the crops), one
    #    file at a time; accepted ones go to a staging folder, so no more than one is held in memory.
    limits = ArchiveLimits(
        max_total=settings.max_style_upload_bytes,
        max_entry=settings.max_upload_bytes,
        max_files=settings.max_style_files,
    )
    entries = [
        Entry(f.filename or f"file-{i}", read=bounded_reader(f.file, limits.max_entry)) for i, f in enumerate(files)
    ]
    staging = storage.style_staging_dir()
    report: list[dict] = []
    zipped = None
    try:
        if archive is not None:
            zipped, more = await anyio.to_thread.run_sync(open_archive, archive.file, limits)
            entries += more
        if len(entries) > settings.max_style_files:
            raise ApiError(413, "too_many_files", f"more than {settings.max_style_files} files")
        for entry in entries:
            row, data = await check_exemplar(
                request.app.state.faces, entry, limits.max_entry, settings.max_pixels, settings.min_face_size
            )
            if data is not None:
                await anyio.to_thread.run_sync(storage.stage_file, staging, len(report), data)
            report.append(row)
    except BaseException:
        storage.discard_staging(staging)
        raise
    finally:
        if zipped is not None:
            zipped.close()
    given = json_object(labels, "labels", "invalid_labels")
    if not all(isinstance(v, str) and v.isidentifier() for v in given.values()):
        raise ApiError(422, "invalid_labels", "labels: expected an object of file name → identifier-like label")
    for entry in report:
        if entry["accepted"] and entry["file"] in given:
            entry["label"] = given[entry["file"]].lower()
    public = [{k: v for k, v in r.items() if k != "landmarks"} for r in report]
    accepted = [i for i, r in enumerate(report) if r["accepted"]]
    if len(accepted) < settings.min_exemplars:
        storage.discard_staging(staging)
        message = f"{len(accepted)} usable exemplars; at least {settings.min_exemplars} are needed"
        return too_few(request, "too_few_exemplars", message, public)
    # 3. Store, register as pending, enqueue on the train queue (timeout above the time budget).
    job_id = uuid.uuid4().hex
    manifest = {
        "files": [
            {"name": report[i]["file"], "label": report[i]["label"], "landmarks": report[i]["landmarks"]}
            for i in accepted
        ]
    }
    storage.publish_staging(staging, style_id, accepted, manifest)
    minutes = float(overrides.get("minutes", settings.train_minutes))
    registry.write_style_meta(
        style_id,
        {
            "name": name,
            "description": description,
            "status": "pending",
            "job_id": job_id,
            "labels": [],
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )
    jobs.create(job_id, principal.key_id, "train", {"style": style_id, "name": name})
    payload = TrainJob(job_id=job_id, style_id=style_id, overrides={"minutes": minutes, **overrides})
    request.app.state.queues[TRAIN_QUEUE].enqueue(
        TRAIN_FUNCTION,
        payload.model_dump(),
        job_id=job_id,
        job_timeout=int(minutes * 60 * 1.5 + 900),
        result_ttl=settings.result_ttl_s,
        failure_ttl=settings.result_ttl_s,
        retry=Retry(max=TRAIN_RETRIES),
        on_failure=Callback(TRAIN_FAILURE_CALLBACK),
    )
    body = {
        "id": style_id,
        "status": "pending",
        "job_id": job_id,
        "accepted": len(accepted),
        "rejected": len(report) - len(accepted),
        "files": public,
        "links": {
            "self": f"/v1/styles/{style_id}",
            "job": f"/v1/jobs/{job_id}",
            "preview": f"/v1/styles/{style_id}/preview",
        },
    }
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/styles/{style_id}", "Retry-After": "30"})


@router.get("/styles/{style_id}/preview", response_model=None, summary="A grid: fixed portraits, stylized")
def style_preview(style_id: str, _: OperatorDep, registry: RegistryDep) -> FileResponse:
    info = registry.style(style_id)
    if info is None:
        raise ApiError(404, "unknown_style", f"no style {style_id!r}")
    path = registry.preview_path(style_id)
    if not path.is_file():
        raise ApiError(404, "preview_not_ready", "no preview yet: the first evaluation has not finished")
    return FileResponse(path, media_type="image/png")


@router.delete(
    "/styles/{style_id}", response_model=StyleDeleted, summary="Cancel a style's training, or retire a ready style"
)
def delete_style(
    request: Request, style_id: str, _: OperatorDep, registry: RegistryDep, jobs: JobsDep, storage: StorageDep
) -> StyleDeleted:
    """Pending: canceled at once. Training: stops at its next step (`canceling`), nothing is published.
    Ready: retired (queued jobs for it fail with `style_unavailable`). Failed: removed. Afterwards the
    style is 404 (operators list deleted ones with `include_deleted`)."""
    info = registry.style(style_id)
    if info is None or info.status in DELETED:
        raise ApiError(404, "unknown_style", f"no style {style_id!r}")
    if info.status == "ready":
        registry.update_style_meta(style_id, status="retired", retired_at=time.time())
        return StyleDeleted(id=style_id, status="retired")
    if info.status == "failed":
        registry.remove_style(style_id)
        storage.delete_style_upload(style_id)
        return StyleDeleted(id=style_id, status="removed")
    redis = request.app.state.redis
    redis.set(style_cancel_key(style_id), "1", ex=7 * 86400)
    job_id = registry.read_style_meta(style_id).get("job_id")
    record = jobs.get(job_id) if job_id else None
    if record is not None and record["status"] == QUEUED:
        jobs.cancel_queued(job_id, "training canceled by an operator")
        registry.update_style_meta(style_id, status="canceled")
        storage.delete_style_upload(style_id)
        return StyleDeleted(id=style_id, status="canceled")
    return StyleDeleted(id=style_id, status="canceling")  # the training job stops at its next step
