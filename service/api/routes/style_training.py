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
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BeforeValidator
from redis import Redis

from service.api.deps import (
    FacesDep,
    JobQueuesDep,
    JobsDep,
    MirrorDep,
    OperatorDep,
    RedisDep,
    RegistryDep,
    RequestIdDep,
    SettingsDep,
    StorageDep,
)
from service.api.errors import ApiError
from service.api.exemplar_uploads import (
    Entry,
    Uploads,
    bounded_reader,
    manifest_of,
    open_archive,
    public_report,
    stage_exemplars,
    too_few,
    upload_limits,
)
from service.api.forms import WEBHOOK_EVENTS_DEFAULT, WebhookEventsField, WebhookField, webhook_spec
from service.api.schemas import ERROR_RESPONSES, StyleDeleted, null_is_none
from service.api.style_policy import DELETED
from service.platform.auth import Principal
from service.platform.contract import STYLE_ID, JobState, StyleState, TrainJob
from service.platform.job_kinds import TRAIN
from service.platform.queueing import JobQueues
from service.platform.redis_keys import style_cancel_key, style_curve_key, style_progress_key
from service.platform.registry import Registry
from service.platform.storage import Storage
from service.platform.webhooks import WebhookSpec
from service.portrait.configs import ConfigError, TransferConfig
from service.portrait.exemplar_files import too_few_exemplars

router = APIRouter(prefix="/v1", tags=["styles"], responses=ERROR_RESPONSES)


def style_id_for(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64]
    if not STYLE_ID.fullmatch(slug):
        raise ApiError(422, "invalid_name", "the name needs at least one letter or digit")
    return slug


MAX_JSON_FIELD = 64 * 1024
REUSABLE = (StyleState.CANCELED, StyleState.FAILED)  # styles whose name a new upload may take


def _claim_name(registry: Registry, storage: Storage, redis: Redis, style_id: str) -> None:
    """409 while a style of this id is pending, training, ready or retired; a canceled or failed one
    (nothing servable) is removed, with what is left of it (uploads, its cancel flag, its progress),
    so that its name can be used again."""
    info = registry.style(style_id)
    if info is not None and info.status not in REUSABLE:
        raise ApiError(409, "duplicate_name", f"a style {style_id!r} already exists ({info.status})")
    if info is not None:
        registry.remove_style(style_id)
    storage.delete_style_files(style_id)  # left by a canceled run, or by an upload cut off mid-publish
    redis.delete(style_cancel_key(style_id), style_progress_key(style_id), style_curve_key(style_id))


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
    principal: OperatorDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    redis: RedisDep,
    registry: RegistryDep,
    storage: StorageDep,
    queues: JobQueuesDep,
    finder: FacesDep,
    name: Annotated[str, Form(min_length=1, max_length=80)],
    files: Annotated[list[UploadFile], File(description="exemplar images")] = [],  # noqa: B006
    archive: Annotated[
        UploadFile | None, BeforeValidator(null_is_none), File(description="a zip; first-level folders are labels")
    ] = None,
    description: Annotated[str, Form(max_length=2000)] = "",
    config: Annotated[str, Form(description="JSON object of TransferConfig overrides")] = "{}",
    labels: Annotated[str, Form(description='JSON {"file name": "attribute label"}; overrides zip folders')] = "{}",
    webhook: WebhookField = None,
    webhook_events: WebhookEventsField = WEBHOOK_EVENTS_DEFAULT,
) -> JSONResponse:
    callback = webhook_spec(settings, webhook, webhook_events)
    # 1. Name, id, config overrides.
    style_id = style_id_for(name)
    _claim_name(registry, storage, redis, style_id)
    overrides = _config_overrides(config, settings.train_minutes)
    # 2. Every exemplar through the aligner (detection and landmarks; the worker renders the crops), one
    #    file at a time; accepted ones go to a staging folder, so no more than one is held in memory.
    staging = storage.style_staging_dir()
    report = await _stage_style_exemplars(Uploads(finder, storage, settings), staging, files, archive)
    _apply_labels(report, json_object(labels, "labels", "invalid_labels"))
    accepted = [i for i, r in enumerate(report) if r["accepted"]]
    refusal = too_few_exemplars(len(accepted), settings.min_exemplars)
    if refusal is not None:
        storage.discard_staging(staging)
        return too_few(request_id, "too_few_exemplars", refusal, public_report(report))
    # 3. Store, register as pending, enqueue on the train queue (timeout above the time budget).
    storage.publish_staging(staging, style_id, accepted, manifest_of(report, accepted))
    record = {"name": name, "description": description}
    job_id = await anyio.to_thread.run_sync(
        _queue_training, queues, registry, principal, style_id, record, overrides, callback
    )
    body = {
        "id": style_id,
        "status": StyleState.PENDING,
        "job_id": job_id,
        "accepted": len(accepted),
        "rejected": len(report) - len(accepted),
        "files": public_report(report),
        "links": {
            "self": f"/v1/styles/{style_id}",
            "job": f"/v1/jobs/{job_id}",
            "preview": f"/v1/styles/{style_id}/preview",
        },
    }
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/styles/{style_id}", "Retry-After": "30"})


def _config_overrides(config: str, train_minutes: float) -> dict:
    """The form's TransferConfig overrides, checked by building the config they make (422 if not)."""
    overrides = json_object(config, "config", "invalid_config")
    try:
        TransferConfig().with_overrides({"minutes": train_minutes, **overrides})
    except (ValueError, ConfigError, TypeError) as e:
        raise ApiError(422, "invalid_config", f"config: {e}") from e
    return overrides


async def _stage_style_exemplars(
    uploads: Uploads, staging, files: list[UploadFile], archive: UploadFile | None
) -> list[dict]:
    """The files and the archive's entries checked and staged (see `stage_exemplars`); the report rows."""
    settings = uploads.settings
    limits = upload_limits(settings)
    entries = [
        Entry(f.filename or f"file-{i}", read=bounded_reader(f.file, limits.max_entry)) for i, f in enumerate(files)
    ]
    report: list[dict] = []
    zipped = None
    try:
        if archive is not None:
            zipped, more = await anyio.to_thread.run_sync(open_archive, archive.file, limits)
            entries += more
        if len(entries) > settings.max_style_files:
            raise ApiError(413, "too_many_files", f"more than {settings.max_style_files} files")
        await stage_exemplars(uploads, staging, entries, report)
    except BaseException:
        uploads.storage.discard_staging(staging)
        raise
    finally:
        if zipped is not None:
            zipped.close()
    return report


def _apply_labels(report: list[dict], given: dict) -> None:
    """The `labels` form field: file name → attribute label, over the zip's folder names."""
    if not all(isinstance(v, str) and v.isidentifier() for v in given.values()):
        raise ApiError(422, "invalid_labels", "labels: expected an object of file name → identifier-like label")
    for entry in report:
        if entry["accepted"] and entry["file"] in given:
            entry["label"] = given[entry["file"]].lower()


def _queue_training(
    queues: JobQueues,
    registry: Registry,
    principal: Principal,
    style_id: str,
    record: dict,
    overrides: dict,
    callback: WebhookSpec | None = None,
) -> str:
    """The style registered as pending (`record`: its name and description), its training job recorded and
    queued; the job's id. Blocking (files, Redis)."""
    job_id = uuid.uuid4().hex
    minutes = float(overrides.get("minutes", queues.settings.train_minutes))
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    meta = {**record, "status": StyleState.PENDING, "job_id": job_id, "labels": [], "created_at": created}
    registry.write_style_meta(style_id, meta)
    payload = TrainJob(job_id=job_id, style_id=style_id, overrides={"minutes": minutes, **overrides})
    queues.submit(TRAIN, payload, principal.key_id, {"style": style_id, "name": record["name"]}, callback)
    return job_id


@router.get("/styles/{style_id}/preview", response_model=None, summary="A grid: fixed portraits, stylized")
def style_preview(style_id: str, _: OperatorDep, registry: RegistryDep, storage: StorageDep) -> Response:
    """This host's file (a ready style's bundle, or training here), else the copy that a training host
    on another machine put on the object store."""
    info = registry.style(style_id)
    if info is None:
        raise ApiError(404, "unknown_style", f"no style {style_id!r}")
    path = registry.preview_path(style_id)
    if path.is_file():
        return FileResponse(path, media_type="image/png")
    data = storage.preview(style_id)
    if data is None:
        raise ApiError(404, "preview_not_ready", "no preview yet: the first evaluation has not finished")
    return Response(data, media_type="image/png")


@router.delete(
    "/styles/{style_id}", response_model=StyleDeleted, summary="Cancel a style's training, or retire a ready style"
)
def delete_style(
    style_id: str,
    _: OperatorDep,
    redis: RedisDep,
    registry: RegistryDep,
    mirror: MirrorDep,
    jobs: JobsDep,
    storage: StorageDep,
) -> StyleDeleted:
    """Pending: canceled at once. Training: stops at its next step (`canceling`), nothing is published.
    Ready: retired (queued jobs for it fail with `style_unavailable`). Failed: removed. Afterwards the
    style is 404 (operators list deleted ones with `include_deleted`)."""
    info = registry.style(style_id)
    if info is None or info.status in DELETED:
        raise ApiError(404, "unknown_style", f"no style {style_id!r}")
    if info.status == StyleState.READY:
        registry.update_style_meta(style_id, status=StyleState.RETIRED, retired_at=time.time())
        mirror.publish_style(style_id)  # a remote store: every host sees it retired
        return StyleDeleted(id=style_id, status=StyleState.RETIRED)
    if info.status == StyleState.FAILED:
        registry.remove_style(style_id)
        storage.delete_style_files(style_id)
        return StyleDeleted(id=style_id, status="removed")
    redis.set(style_cancel_key(style_id), "1", ex=7 * 86400)
    job_id = registry.read_style_meta(style_id).get("job_id")
    record = jobs.get(job_id) if job_id else None
    if record is not None and record["status"] == JobState.QUEUED:
        jobs.cancel_queued(job_id, "training canceled by an operator")
        registry.update_style_meta(style_id, status=StyleState.CANCELED)
        storage.delete_style_upload(style_id)
        return StyleDeleted(id=style_id, status=StyleState.CANCELED)
    return StyleDeleted(id=style_id, status="canceling")  # the training job stops at its next step
