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
from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BeforeValidator, Field

from service.api.admission import Reservation, enqueue_capped, idem_key, queue_full
from service.api.deps import (
    ClientDep,
    JobsDep,
    RegistryDep,
    StorageDep,
    StylizeQueueDep,
    charge_rate_limit,
)
from service.api.edits import parse_edits
from service.api.errors import ApiError
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
from service.api.job_views import accepted, job_status, queued_record
from service.api.schemas import ERROR_RESPONSES, JobStatus, NotReady, null_is_none
from service.api.style_policy import SIZES, ready_style, strength_controls
from service.core.auth import Principal
from service.core.contract import (
    CONTENT_TYPES,
    JOB_FAILURE_CALLBACK,
    JOB_ID,
    STYLIZE_FUNCTION,
    JobState,
    StylizeJob,
    cancel_key,
    job_key,
)
from service.core.objectstore import ObjectMissing
from service.core.queueing import enqueue_job
from service.core.settings import Settings
from service.core.storage import Storage, StoredResult
from service.core.webhooks import WebhookSpec

router = APIRouter(prefix="/v1", tags=["stylize"], responses=ERROR_RESPONSES)

RESULT_POLL_S = 0.1


@router.post(
    "/stylize",
    status_code=202,
    response_model=JobStatus,
    summary="Stylize a portrait (asynchronous: poll the returned job)",
)
async def stylize(
    request: Request,
    principal: ClientDep,
    jobs: JobsDep,
    storage: StorageDep,
    registry: RegistryDep,
    queue: StylizeQueueDep,
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
    callback = webhook_spec(request.app.state.settings, webhook, webhook_events)
    # 2. Read the upload (already size-capped by the BodyLimit middleware).
    data = await image.read()
    # 3. A retried request with the same Idempotency-Key gets the job of the first.
    reservation = None
    if idem := idempotency_header or idempotency_key:
        reservation = _reservation(request, principal, idem, data, options)
        replay = await reservation.acquire(lambda job_id: jobs.get(job_id) is not None)
        if replay is not None:
            return accepted(request, replay)
    try:
        job_id = await _admit_stylize(request, principal, queue, jobs, storage, data, options, callback)
    except BaseException:
        if reservation is not None:
            reservation.release()
        raise
    if reservation is not None:
        reservation.complete(job_id)
    return accepted(request, job_id, queued_record("stylize", options, callback))  # no Redis round trip


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


def _reservation(request: Request, principal: Principal, idem: str, data: bytes, options: dict) -> Reservation:
    """The Idempotency-Key's reservation: the same key with another photo or options is a conflict."""
    fingerprint = hashlib.sha256(data + json.dumps(options, sort_keys=True).encode()).hexdigest()
    ttl_s = request.app.state.settings.idempotency_ttl_s
    return Reservation(request.app.state.redis, idem_key(principal.key_id, idem), fingerprint, ttl_s)


async def _admit_stylize(
    request: Request, principal: Principal, queue, jobs, storage, data: bytes, options, callback: WebhookSpec | None
) -> str:
    """Budgets, the face, then the upload stored, the job recorded and queued; the new job's id."""
    settings = request.app.state.settings
    # 1. The key's rate budget, then back-pressure, before any work (the cap is checked again,
    #    atomically, at the enqueue).
    await anyio.to_thread.run_sync(_check_budgets, request, principal, queue)
    # 2. Decode and find the face (faces=all: every face) now, so a bad photo is refused at once (the
    #    worker renders the crops).
    group = []
    if options.get("faces") == "all":
        group = await request.app.state.faces.group(
            data, settings.max_pixels, settings.min_face_size, settings.max_faces
        )
        landmarks = next(f["landmarks"] for f in group if f["landmarks"] is not None)
    else:
        landmarks = await request.app.state.faces.landmarks(
            data, settings.max_pixels, settings.min_face_size, options["face_index"]
        )
    # 3. Store the upload, record the job, enqueue it (the queue cap and the enqueue under one lock).
    job_id = uuid.uuid4().hex
    fields = {k: v for k, v in options.items() if k not in ("face_index", "faces")}
    payload = StylizeJob(job_id=job_id, landmarks=landmarks, faces=group, **fields)

    def enqueue() -> None:
        jobs.create(job_id, principal.key_id, "stylize", options, callback)
        enqueue_job(
            queue,
            STYLIZE_FUNCTION,
            JOB_FAILURE_CALLBACK,
            payload,
            timeout_s=settings.job_timeout_s,
            retries=settings.job_retries,
            ttl_s=settings.result_ttl_s,
        )

    def store_and_enqueue() -> None:
        storage.write_input(job_id, data)
        try:
            enqueue_capped(request.app.state.redis, queue, settings.max_queue_depth, enqueue)
        except ApiError:
            storage.delete_input(job_id)
            raise

    await anyio.to_thread.run_sync(store_and_enqueue)  # disk and Redis: off the event loop
    return job_id


def _check_budgets(request: Request, principal: Principal, queue) -> None:
    """The key's rate budget, then the queue cap (blocking Redis calls: run in a worker thread)."""
    charge_rate_limit(request, principal)
    if queue.count >= request.app.state.settings.max_queue_depth:
        raise queue_full()


def _visible_record(job_id: str, principal: Principal, jobs) -> dict:
    """The job's record, if it exists and the caller may see it (404 either way, not to leak ids)."""
    record = jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
    if record is None or (not principal.is_operator and record.get("owner") != principal.key_id):
        raise ApiError(404, "unknown_job", f"no job {job_id!r}")
    return record


@router.get("/jobs", response_model=list[JobStatus], tags=["jobs"])
def list_jobs(
    request: Request, principal: ClientDep, jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[JobStatus]:
    """The most recent jobs (newest first, at most `limit`): a client's own, every client's for operators."""
    redis = request.app.state.redis
    ids = [k.decode().rsplit(":", 1)[1] for k in redis.scan_iter(match="agilegan:job:*", count=500)]
    records = [(job_id, jobs.get(job_id)) for job_id in ids if JOB_ID.fullmatch(job_id)]
    records = [r for r in records if r[1] and (principal.is_operator or r[1].get("owner") == principal.key_id)]
    records = sorted(records, key=lambda r: r[1]["created_at"], reverse=True)
    return [job_status(request, job_id, record) for job_id, record in records[:limit]]


@router.get("/jobs/{job_id}", response_model=JobStatus, tags=["jobs"])
def get_job(request: Request, job_id: str, principal: ClientDep, jobs: JobsDep) -> JobStatus:
    return job_status(request, job_id, _visible_record(job_id, principal, jobs))


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
    request: Request,
    job_id: str,
    principal: ClientDep,
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
    aredis = request.app.state.aredis
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
            "request_id": request.state.request_id,
            "status": status,
        }
        return JSONResponse(body, status_code=202, headers={"Retry-After": "1", "Location": f"/v1/jobs/{job_id}"})
    if status != JobState.SUCCEEDED:
        raise ApiError(409, f"job_{status}", f"the job {status}: no result")
    found = await anyio.to_thread.run_sync(storage.result, job_id)
    if found is None:
        raise ApiError(410, "result_expired", "the result has expired")
    return await anyio.to_thread.run_sync(_result_response, request.app.state.settings, storage, found)


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
def cancel_job(request: Request, job_id: str, principal: ClientDep, jobs: JobsDep) -> JobStatus:
    """Cancel: a queued job never runs, a running one stops at its next step (`stage: canceling`).
    The job stays visible as `canceled`; canceling a finished job changes nothing."""
    record = _visible_record(job_id, principal, jobs)
    record = _cancel(request, job_id, record, jobs)
    if record["status"] == JobState.RUNNING:
        record = {**record, "stage": "canceling"}
    return job_status(request, job_id, record)


@router.delete("/jobs/{job_id}", status_code=204, tags=["jobs"])
def delete_job(request: Request, job_id: str, principal: ClientDep, jobs: JobsDep, storage: StorageDep) -> Response:
    """Delete the job: canceled first if it has not finished, then its record, upload and result are
    removed (afterwards the job is 404). A running job stops at its next step and stores nothing."""
    record = _visible_record(job_id, principal, jobs)
    _cancel(request, job_id, record, jobs)
    jobs.delete(job_id)
    storage.delete_job_files(job_id)
    return Response(status_code=204)


def _cancel(request: Request, job_id: str, record: dict, jobs) -> dict:
    """Flag the job canceled (the worker checks the flag between steps); returns the fresh record."""
    if jobs.is_terminal(record):
        return record
    if record.get("kind") == "train":
        style = record.get("options", {}).get("style")
        raise ApiError(409, "cancel_via_style", f"a training job is canceled with DELETE /v1/styles/{style}")
    redis = request.app.state.redis
    redis.set(cancel_key(job_id), "1", ex=request.app.state.settings.job_timeout_s + 120)
    if record["status"] == JobState.QUEUED:
        jobs.cancel_queued(job_id)
    return jobs.get(job_id) or record
