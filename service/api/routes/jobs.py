"""Stylize jobs: submit a photo, poll the job, fetch the result, cancel."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Header, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BeforeValidator, Field
from redis import Redis

from service.api.admission import Reservation
from service.api.deps import (
    AsyncRedisDep,
    ClientDep,
    FacesDep,
    JobQueuesDep,
    JobsDep,
    JobViewsDep,
    RateBudgetDep,
    RedisDep,
    RegistryDep,
    RequestIdDep,
    SettingsDep,
    StorageDep,
)
from service.api.edits import parse_edits
from service.api.errors import ApiError
from service.api.faces import FaceFinder
from service.api.forms import (
    WEBHOOK_EVENTS_DEFAULT,
    EditsField,
    FacesField,
    OutputField,
    SizeField,
    StrengthField,
    StructureField,
    StyleField,
    WebhookEventsField,
    WebhookField,
    group_option,
    webhook_spec,
)
from service.api.job_views import queued_record
from service.api.rate_limit import RateBudget
from service.api.schemas import ERROR_RESPONSES, JobStatus, NotReady, null_is_none
from service.api.style_policy import SIZES, ready_style, strength_controls
from service.platform import redis_keys
from service.platform.auth import Principal
from service.platform.contract import CONTENT_TYPES, JOB_ID, JobState, StylizeJob
from service.platform.job_kinds import STYLIZE, TRAIN
from service.platform.jobstore import JobStore
from service.platform.objectstore import ObjectMissing
from service.platform.queueing import JobQueues, QueueFull
from service.platform.redis_keys import JOB_PATTERN, cancel_key, job_id_of, job_key
from service.platform.settings import Settings
from service.platform.storage import Storage, StoredResult
from service.platform.webhooks import WebhookSpec

router = APIRouter(prefix="/v1", tags=["stylize"], responses=ERROR_RESPONSES)

RESULT_POLL_S = 0.1


@router.post(
    "/stylize",
    status_code=202,
    response_model=JobStatus,
    summary="Stylize a portrait (asynchronous: poll the returned job)",
)
async def stylize(
    principal: ClientDep,
    settings: SettingsDep,
    redis: RedisDep,
    jobs: JobsDep,
    views: JobViewsDep,
    storage: StorageDep,
    registry: RegistryDep,
    queues: JobQueuesDep,
    finder: FacesDep,
    budget: RateBudgetDep,
    image: Annotated[UploadFile, File(description="the photo: JPEG, PNG or WebP")],
    style: StyleField,
    output: OutputField = "aligned",
    format: Annotated[Literal["png", "jpeg", "webp"], Form()] = "png",
    size: SizeField = 1024,
    attribute: Annotated[str, Form(description="'auto' or one of the style's branches")] = "auto",
    face_index: Annotated[int, Form(ge=0, le=63, description="which face, by size (0 = largest)")] = 0,
    faces: FacesField = "one",
    structure: StructureField = None,
    strength: StrengthField = 1.0,
    edits: EditsField = None,
    idempotency_key: Annotated[
        Annotated[str, Field(max_length=128)] | None, BeforeValidator(null_is_none), Form()
    ] = None,
    idempotency_header: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
    webhook: WebhookField = None,
    webhook_events: WebhookEventsField = WEBHOOK_EVENTS_DEFAULT,
) -> JSONResponse:
    # 1. The style must exist and be ready, the attribute one of its branches; controls, edits and the
    #    webhook checked.
    options = _stylize_options(registry, style, size, attribute, structure, strength, edits)
    options.update(output=output, format=format, face_index=face_index, **group_option(faces, output))
    callback = webhook_spec(settings, webhook, webhook_events)
    # 2. Read the upload (already size-capped by the BodyLimit middleware).
    data = await image.read()
    # 3. A retried request with the same Idempotency-Key gets the job of the first.
    reservation = None
    if idem := idempotency_header or idempotency_key:
        reservation = _reservation(redis, settings.idempotency_ttl_s, principal, idem, data, options)
        replay = await reservation.acquire(lambda job_id: jobs.get(job_id) is not None)
        if replay is not None:
            return views.accepted(replay)
    try:
        await anyio.to_thread.run_sync(_check_budgets, budget, queues, principal)
        payload = await _find_faces(finder, settings, data, options)
        await anyio.to_thread.run_sync(_store_and_submit, queues, storage, principal, payload, data, options, callback)
    except BaseException:
        if reservation is not None:
            reservation.release()
        raise
    if reservation is not None:
        reservation.complete(payload.job_id)
    return views.accepted(payload.job_id, queued_record(STYLIZE.name, options, callback))  # no Redis round trip


def _stylize_options(
    registry, style: str, size: int, attribute: str, structure: int | None, strength: float, edits: str | None
) -> dict[str, Any]:
    """The job's checked options (the style ready, the attribute one of its branches, the style's
    controls, the edits against the registry); 4xx ApiErrors otherwise."""
    if size not in SIZES:
        raise ApiError(422, "invalid_request", "size: must be 256, 512 or 1024")
    info = ready_style(registry, style)
    if attribute != "auto" and attribute not in info.branches:
        branches = ", ".join(info.branches) or "none (a single-branch style)"
        raise ApiError(422, "unknown_attribute", f"attribute must be 'auto' or one of: {branches}")
    structure, strength = strength_controls(info, structure, strength)
    edit_specs = parse_edits(edits, registry, info)
    return {
        "style": style,
        "size": size,
        "attribute": attribute,
        "structure": structure,
        "strength": strength,
        "edits": [e.model_dump() for e in edit_specs],
    }


def _reservation(redis: Redis, ttl_s: int, principal: Principal, idem: str, data: bytes, options: dict) -> Reservation:
    """The Idempotency-Key's reservation: the same key with another photo or options is a conflict."""
    fingerprint = hashlib.sha256(data + json.dumps(options, sort_keys=True).encode()).hexdigest()
    return Reservation(redis, redis_keys.idempotency_key(principal.key_id, idem), fingerprint, ttl_s)


def _check_budgets(budget: RateBudget, queues: JobQueues, principal: Principal) -> None:
    """1. The key's rate budget, then back-pressure, before any work (the cap is checked again, atomically,
    at the submit). Blocking Redis calls: run in a worker thread."""
    budget.charge(principal)
    queues.check_room(STYLIZE)


async def _find_faces(faces: FaceFinder, settings: Settings, data: bytes, options: dict) -> StylizeJob:
    """2. Decode and find the face (faces=all: every face) now, so a bad photo is refused at once (the worker
    renders the crops); the job's payload."""
    group = []
    if options.get("faces") == "all":
        group = await faces.group(data, settings.max_pixels, settings.min_face_size, settings.max_faces)
        landmarks = next(f["landmarks"] for f in group if f["landmarks"] is not None)
    else:
        landmarks = await faces.landmarks(data, settings.max_pixels, settings.min_face_size, options["face_index"])
    fields = {k: v for k, v in options.items() if k not in ("face_index", "faces")}
    return StylizeJob(job_id=uuid.uuid4().hex, landmarks=landmarks, faces=group, **fields)


def _store_and_submit(
    queues: JobQueues,
    storage: Storage,
    principal: Principal,
    payload: StylizeJob,
    data: bytes,
    options: dict,
    callback: WebhookSpec | None,
) -> None:
    """3. Store the upload, then record and queue the job (under the queue cap); a refused job's upload goes."""
    storage.write_input(payload.job_id, data)
    try:
        queues.submit(STYLIZE, payload, principal.key_id, options, callback)
    except QueueFull:
        storage.delete_input(payload.job_id)
        raise


def _visible_record(job_id: str, principal: Principal, jobs) -> dict:
    """The job's record, if it exists and the caller may see it (404 either way, not to leak ids)."""
    record = jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
    if record is None or (not principal.is_operator and record.get("owner") != principal.key_id):
        raise ApiError(404, "unknown_job", f"no job {job_id!r}")
    return record


@router.get("/jobs", response_model=list[JobStatus], tags=["jobs"])
def list_jobs(
    principal: ClientDep,
    redis: RedisDep,
    jobs: JobsDep,
    views: JobViewsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobStatus]:
    """The most recent jobs (newest first, at most `limit`): a client's own, every client's for operators."""
    ids = [job_id_of(k) for k in redis.scan_iter(match=JOB_PATTERN, count=500)]
    records = [(job_id, jobs.get(job_id)) for job_id in ids if JOB_ID.fullmatch(job_id)]
    records = [r for r in records if r[1] and (principal.is_operator or r[1].get("owner") == principal.key_id)]
    records = sorted(records, key=lambda r: r[1]["created_at"], reverse=True)
    return [views.status(job_id, record) for job_id, record in records[:limit]]


@router.get("/jobs/{job_id}", response_model=JobStatus, tags=["jobs"])
def get_job(job_id: str, principal: ClientDep, jobs: JobsDep, views: JobViewsDep) -> JobStatus:
    return views.status(job_id, _visible_record(job_id, principal, jobs))


@router.get(
    "/jobs/{job_id}/result",
    responses={
        200: {"content": {t: {} for t in CONTENT_TYPES.values()}, "description": "the image"},
        202: {"model": NotReady, "description": "the job has not finished (after waiting `wait` s)"},
    },
    tags=["jobs"],
    response_model=None,
)
async def get_result(
    job_id: str,
    principal: ClientDep,
    settings: SettingsDep,
    aredis: AsyncRedisDep,
    request_id: RequestIdDep,
    jobs: JobsDep,
    storage: StorageDep,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for the job to finish")] = 0,
) -> FileResponse | JSONResponse:
    """The image once the job succeeded; 202 with `not_ready` while it runs (after `wait` seconds).

    Waiting holds no thread: the handler polls the job's status with the async Redis client every
    `RESULT_POLL_S` (a worker thread per long-poll let 50 clients stall every sync endpoint).
    """
    record = await anyio.to_thread.run_sync(_visible_record, job_id, principal, jobs)
    deadline = time.monotonic() + wait
    status = record["status"]
    while status in (JobState.QUEUED, JobState.RUNNING) and time.monotonic() < deadline:
        await asyncio.sleep(min(RESULT_POLL_S, max(0.0, deadline - time.monotonic())))
        status = ((await aredis.hget(job_key(job_id), "status")) or status.encode()).decode()
    if status != record["status"]:
        record = await anyio.to_thread.run_sync(jobs.get, job_id) or record
    status = record["status"]
    if status in (JobState.QUEUED, JobState.RUNNING):
        body = {
            "code": "not_ready",
            "message": f"the job is {status}",
            "request_id": request_id,
            "status": status,
        }
        return JSONResponse(body, status_code=202, headers={"Retry-After": "1", "Location": f"/v1/jobs/{job_id}"})
    if status != JobState.SUCCEEDED:
        raise ApiError(409, f"job_{status}", f"the job {status}: no result")
    found = await anyio.to_thread.run_sync(storage.result, job_id)
    if found is None:
        raise ApiError(410, "result_expired", "the result has expired")
    return await anyio.to_thread.run_sync(_result_response, settings, storage, found)


def _result_response(settings: Settings, storage: Storage, found: StoredResult) -> Response:
    """A local file as a file; a remote object streamed through the API (never whole in memory), or a
    307 to a presigned URL of the store (`AGILEGAN_RESULT_DELIVERY=presigned`: the bytes skip the API)."""
    media_type = CONTENT_TYPES[found.fmt]
    if found.path is not None:
        return FileResponse(found.path, media_type=media_type, filename=found.filename)
    if settings.result_delivery == "presigned":
        url = storage.result_url(found, settings.presign_ttl_s)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    try:
        stream = storage.open_result(found)
    except ObjectMissing:  # deleted since it was found
        raise ApiError(410, "result_expired", "the result has expired") from None
    headers = {
        "Content-Disposition": f'attachment; filename="{found.filename}"',
        "Content-Length": str(stream.size),
    }
    return StreamingResponse(stream.chunks, media_type=media_type, headers=headers)


@router.post("/jobs/{job_id}/cancel", response_model=JobStatus, tags=["jobs"])
def cancel_job(
    job_id: str, principal: ClientDep, settings: SettingsDep, redis: RedisDep, jobs: JobsDep, views: JobViewsDep
) -> JobStatus:
    """Cancel: a queued job never runs, a running one stops at its next step (`stage: canceling`).
    The job stays visible as `canceled`; canceling a finished job changes nothing."""
    record = _visible_record(job_id, principal, jobs)
    record = _cancel(redis, settings.job_timeout_s, job_id, record, jobs)
    if record["status"] == JobState.RUNNING:
        record = {**record, "stage": "canceling"}
    return views.status(job_id, record)


@router.delete("/jobs/{job_id}", status_code=204, tags=["jobs"])
def delete_job(
    job_id: str, principal: ClientDep, settings: SettingsDep, redis: RedisDep, jobs: JobsDep, storage: StorageDep
) -> Response:
    """Delete the job: canceled first if it has not finished, then its record, upload and result are
    removed (afterwards the job is 404). A running job stops at its next step and stores nothing."""
    record = _visible_record(job_id, principal, jobs)
    _cancel(redis, settings.job_timeout_s, job_id, record, jobs)
    jobs.delete(job_id)
    storage.delete_job_files(job_id)
    return Response(status_code=204)


def _cancel(redis: Redis, job_timeout_s: int, job_id: str, record: dict, jobs: JobStore) -> dict:
    """Flag the job canceled (the worker checks the flag between steps); returns the fresh record."""
    if jobs.is_terminal(record):
        return record
    if record.get("kind") == TRAIN.name:
        style = record.get("options", {}).get("style")
        raise ApiError(409, "cancel_via_style", f"a training job is canceled with DELETE /v1/styles/{style}")
    redis.set(cancel_key(job_id), "1", ex=job_timeout_s + 120)
    if record["status"] == JobState.QUEUED:
        jobs.cancel_queued(job_id)
    return jobs.get(job_id) or record
