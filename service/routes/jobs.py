"""Stylize jobs: submit a photo, poll the job, fetch the result, cancel."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Annotated, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BeforeValidator, Field
from rq import Callback, Retry

from service.admission import Reservation, enqueue_capped, idem_key, queue_full
from service.auth import Principal
from service.contract import (
    CONTENT_TYPES,
    JOB_FAILURE_CALLBACK,
    JOB_ID,
    QUEUED,
    RUNNING,
    STYLIZE_FUNCTION,
    SUCCEEDED,
    StylizeJob,
    cancel_key,
    job_key,
)
from service.deps import (
    ClientDep,
    JobsDep,
    RegistryDep,
    StorageDep,
    StylizeQueueDep,
    charge_rate_limit,
)
from service.edits import parse_edits
from service.errors import ApiError
from service.job_views import accepted, job_status
from service.schemas import ERROR_RESPONSES, JobStatus, NotReady, null_is_none
from service.style_policy import SIZES, ready_style, strength_controls

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
    style: Annotated[
        str, Form(min_length=1, max_length=64, description="style id (GET /v1/styles)", examples=["demo"])
    ],
    output: Annotated[Literal["aligned", "full"], Form(description="aligned crop, or pasted back")] = "aligned",
    format: Annotated[Literal["png", "jpeg", "webp"], Form()] = "png",
    size: Annotated[
        int, Form(description="side of the aligned result: 256, 512 or 1024", json_schema_extra={"enum": SIZES})
    ] = 1024,
    attribute: Annotated[str, Form(description="'auto' or one of the style's branches")] = "auto",
    face_index: Annotated[int, Form(ge=0, le=63, description="which face, by size (0 = largest)")] = 0,
    structure: Annotated[
        Annotated[int, Field(ge=0, le=8)] | None,
        BeforeValidator(null_is_none),
        Form(
            description="layer swap: keep the photo's structure up to 2^(k+2) px (0 = off; "
            "default: the style's, see its `controls`)",
        ),
    ] = None,
    strength: Annotated[
        float,
        Form(
            ge=0.0,
            le=1.0,
            description="style strength: 1 = the style, 0 = the photo's reconstruction (quantised to 0.05)",
        ),
    ] = 1.0,
    edits: Annotated[
        Annotated[str, Field(max_length=4000)] | None,
        BeforeValidator(null_is_none),
        Form(
            description='latent edits, JSON: direction id (or id:INDEX) → alpha, or → {"alpha": a, "layers": "A-B"}; '
            "GET /v1/directions lists them",
            examples=['{"smile": 1.5, "sefa:3": -2}'],
        ),
    ] = None,
    idempotency_key: Annotated[
        Annotated[str, Field(max_length=128)] | None, BeforeValidator(null_is_none), Form()
    ] = None,
    idempotency_header: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> JSONResponse:
    settings = request.app.state.settings
    if size not in SIZES:
        raise ApiError(422, "invalid_request", "size: must be 256, 512 or 1024")
    # 1. The style must exist and be ready, the attribute must be one of its branches.
    info = ready_style(registry, style)
    if attribute != "auto" and attribute not in info.branches:
        branches = ", ".join(info.branches) or "none (a single-branch style)"
        raise ApiError(422, "unknown_attribute", f"attribute must be 'auto' or one of: {branches}")
    structure, strength = strength_controls(info, structure, strength)
    edit_specs = parse_edits(edits, registry, info)

    # 2. Read the upload (already size-capped by the BodyLimit middleware).
    data = await image.read()
    options = {
        "style": style,
        "output": output,
        "format": format,
        "size": size,
        "attribute": attribute,
        "face_index": face_index,
        "structure": structure,
        "strength": strength,
        "edits": [e.model_dump() for e in edit_specs],
    }
    fingerprint = hashlib.sha256(data + json.dumps(options, sort_keys=True).encode()).hexdigest()
    idem = idempotency_header or idempotency_key
    reservation = None
    if idem:
        reservation = Reservation(
            request.app.state.redis, idem_key(principal.key_id, idem), fingerprint, settings.idempotency_ttl_s
        )
        replay = await reservation.acquire(lambda job_id: jobs.get(job_id) is not None)
        if replay is not None:
            return accepted(request, replay)
    try:
        # 3. The key's rate budget, then back-pressure, before any work (the cap is checked again,
        #    atomically, at the enqueue).
        await anyio.to_thread.run_sync(_check_budgets, request, principal, queue)
        # 4. Decode and find the face now, so a bad photo is refused at once (the worker renders the crop).
        landmarks = await request.app.state.faces.landmarks(
            data, settings.max_pixels, settings.min_face_size, face_index
        )
        # 5. Store the upload, record the job, enqueue it (the queue cap and the enqueue under one lock).
        job_id = uuid.uuid4().hex
        payload = StylizeJob(
            job_id=job_id,
            style=style,
            output=output,
            format=format,
            size=size,
            attribute=attribute,
            landmarks=landmarks,
            structure=structure,
            strength=strength,
            edits=edit_specs,
        )
        retries = settings.job_retries

        def enqueue() -> None:
            jobs.create(job_id, principal.key_id, "stylize", options)
            queue.enqueue(
                STYLIZE_FUNCTION,
                payload.model_dump(),
                job_id=job_id,
                job_timeout=settings.job_timeout_s,
                result_ttl=settings.result_ttl_s,
                failure_ttl=settings.result_ttl_s,
                retry=Retry(max=retries) if retries else None,  # re-runs after a worker crash, at once
                on_failure=Callback(JOB_FAILURE_CALLBACK),
            )

        def store_and_enqueue() -> None:
            storage.write_input(job_id, data)
            try:
                enqueue_capped(request.app.state.redis, queue, settings.max_queue_depth, enqueue)
            except ApiError:
                storage.delete_input(job_id)
                raise

        await anyio.to_thread.run_sync(store_and_enqueue)  # disk and Redis: off the event loop
    except BaseException:
        if reservation is not None:
            reservation.release()
        raise
    if reservation is not None:
        reservation.complete(job_id)
    record = {"status": QUEUED, "kind": "stylize", "created_at": time.time(), "options": options}
    return accepted(request, job_id, record)  # built here: no Redis round trip for a job just queued


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


@router.get("/whoami", tags=["jobs"], summary="The caller's key id and role (what the console shows)")
def whoami(principal: ClientDep) -> dict[str, str]:
    return {"key_id": principal.key_id, "role": principal.role}


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
    while status in (QUEUED, RUNNING) and time.monotonic() < deadline:
        await asyncio.sleep(min(RESULT_POLL_S, max(0.0, deadline - time.monotonic())))
        status = ((await aredis.hget(job_key(job_id), "status")) or status.encode()).decode()
    if status != record["status"]:
        record = await anyio.to_thread.run_sync(jobs.get, job_id) or record
    status = record["status"]
    if status in (QUEUED, RUNNING):
        body = {
            "code": "not_ready",
            "message": f"the job is {status}",
            "request_id": request.state.request_id,
            "status": status,
        }
        return JSONResponse(body, status_code=202, headers={"Retry-After": "1", "Location": f"/v1/jobs/{job_id}"})
    if status != SUCCEEDED:
        raise ApiError(409, f"job_{status}", f"the job {status}: no result")
    path = storage.result_path(job_id)
    if path is None:
        raise ApiError(410, "result_expired", "the result has expired")
    fmt = path.suffix.lstrip(".")
    return FileResponse(path, media_type=CONTENT_TYPES[fmt], filename=f"{job_id}.{fmt}")


@router.post("/jobs/{job_id}/cancel", response_model=JobStatus, tags=["jobs"])
def cancel_job(request: Request, job_id: str, principal: ClientDep, jobs: JobsDep) -> JobStatus:
    """Cancel: a queued job never runs, a running one stops at its next step (`stage: canceling`).
    The job stays visible as `canceled`; canceling a finished job changes nothing."""
    record = _visible_record(job_id, principal, jobs)
    record = _cancel(request, job_id, record, jobs)
    if record["status"] == RUNNING:
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
    if record["status"] == QUEUED:
        jobs.cancel_queued(job_id)
    return jobs.get(job_id) or record
