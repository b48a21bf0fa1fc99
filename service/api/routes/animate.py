"""Video jobs: stylize every frame of a video, or drive a portrait with a video's motion (retarget).

The upload streams to the job's storage folder; its container header is read there (duration, frame
count, frame size) and a video over the limits is refused before any frame is decoded. To retarget,
the portrait's face is found now, as for `POST /v1/stylize`. Jobs run on the `video` queue; their
status carries `detail` (frames done, total, ETA) and they resume from their last finished chunk of
frames after a worker dies.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Annotated, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, Field

from service.api.admission import enqueue_capped
from service.api.deps import ClientDep, JobsDep, RegistryDep, StorageDep, charge_rate_limit
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
from service.api.job_views import accepted, queued_record
from service.api.schemas import ERROR_RESPONSES, JobStatus, null_is_none
from service.api.style_policy import SIZES, ready_style, strength_controls
from service.core.contract import ANIMATE_FUNCTION, JOB_FAILURE_CALLBACK, VIDEO_QUEUE, AnimateJob
from service.core.media.video_io import VideoInfo, check_limits, probe
from service.core.queueing import enqueue_job
from service.core.webhooks import WebhookSpec

router = APIRouter(prefix="/v1", tags=["video"], responses=ERROR_RESPONSES)
VIDEO_TIMEOUT_S = 6 * 3600


def _save_upload(upload: UploadFile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    upload.file.seek(0)
    with open(path, "wb") as f:
        shutil.copyfileobj(upload.file, f, 1 << 20)


@router.post("/animate", status_code=202, response_model=JobStatus, summary="Stylize a video, or retarget a portrait")
async def animate(
    request: Request,
    principal: ClientDep,
    jobs: JobsDep,
    storage: StorageDep,
    registry: RegistryDep,
    video: Annotated[UploadFile, File(description="MP4, WebM, GIF, or a zip of frames")],
    style: StyleField,
    portrait: Annotated[
        UploadFile | None, BeforeValidator(null_is_none), File(description="retarget: the portrait to animate")
    ] = None,
    mode: Annotated[Literal["stylize", "retarget"], Form()] = "stylize",
    output: OutputField = "full",
    format: Annotated[Literal["mp4", "webm", "gif", "zip"], Form()] = "mp4",
    size: SizeField = 256,
    fps: Annotated[
        Annotated[float, Field(gt=0, le=120, allow_inf_nan=False)] | None,
        BeforeValidator(null_is_none),
        Form(description="zip input"),
    ] = None,
    structure: StructureField = None,
    strength: StrengthField = 1.0,
    edits: EditsField = None,
    faces: FacesField = "one",
    webhook: WebhookField = None,
    webhook_events: WebhookEventsField = WEBHOOK_EVENTS_DEFAULT,
) -> JSONResponse:
    if size not in SIZES:
        raise ApiError(422, "invalid_request", "size: must be 256, 512 or 1024")
    callback = webhook_spec(request.app.state.settings, webhook, webhook_events)
    # 1. The style, its controls and edits; a portrait when retargeting.
    info = ready_style(registry, style)
    structure, strength = strength_controls(info, structure, strength)
    edit_specs = parse_edits(edits, registry, info)
    if mode == "retarget" and portrait is None:
        raise ApiError(422, "portrait_required", "mode retarget animates a portrait: send it as `portrait`")
    if faces == "all" and mode == "retarget":
        raise ApiError(422, "faces_need_stylize_mode", "faces=all stylizes every face of the video: mode=stylize")
    group_option(faces, output)  # faces=all needs output=full
    await anyio.to_thread.run_sync(charge_rate_limit, request, principal)
    job_id = uuid.uuid4().hex
    payload = AnimateJob(
        job_id=job_id,
        style=style,
        mode=mode,
        output=output,
        format=format,
        size=size,
        structure=structure,
        strength=strength,
        edits=edit_specs,
        fps=fps,
        faces=faces,
    )
    try:
        options = await _admit_animate(request, principal, jobs, storage, video, portrait, payload, callback)
    except BaseException:
        storage.delete_video_work(job_id)
        raise
    return accepted(request, job_id, queued_record("animate", options, callback))


async def _admit_animate(
    request: Request,
    principal,
    jobs,
    storage,
    video: UploadFile,
    portrait: UploadFile | None,
    payload: AnimateJob,
    callback: WebhookSpec | None,
) -> dict:
    """The inputs stored and checked, the job recorded and queued on the video queue (under the queue
    cap); the job's options as its record shows them."""
    settings = request.app.state.settings
    # 2. The video to disk, its header against the limits (before any frame is decoded); the portrait's face.
    header = await _store_inputs(request, storage, payload.job_id, video, portrait, payload)
    # 3. Record and enqueue on the video queue (under the queue cap).
    options = {**payload.model_dump(exclude={"job_id", "portrait_landmarks", "fps"}), "frames": header.frames}
    options["fps"] = header.fps
    queue = request.app.state.queues[VIDEO_QUEUE]

    def enqueue() -> None:
        jobs.create(payload.job_id, principal.key_id, "animate", options, callback)
        enqueue_job(
            queue,
            ANIMATE_FUNCTION,
            JOB_FAILURE_CALLBACK,
            payload,
            timeout_s=VIDEO_TIMEOUT_S,
            retries=settings.job_retries,
            ttl_s=settings.result_ttl_s,
        )

    await anyio.to_thread.run_sync(enqueue_capped, request.app.state.redis, queue, settings.max_queue_depth, enqueue)
    return options


async def _store_inputs(
    request: Request, storage, job_id: str, video: UploadFile, portrait: UploadFile | None, payload: AnimateJob
) -> VideoInfo:
    """The video in the job's folder, checked against the limits by its header; the portrait (a photo:
    the image cap, not the video one) with its face's landmarks set on `payload`."""
    settings = request.app.state.settings
    folder = storage.video_dir(job_id)
    limits = settings.video_limits()
    await anyio.to_thread.run_sync(_save_upload, video, folder / "video")
    header = await anyio.to_thread.run_sync(probe, folder / "video", payload.fps, limits)
    check_limits(header, limits)
    if portrait is not None:
        data = await portrait.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(413, "payload_too_large", f"portrait: at most {settings.max_upload_bytes} bytes")
        landmarks = await request.app.state.faces.landmarks(data, settings.max_pixels, settings.min_face_size, 0)
        payload.portrait_landmarks = landmarks
        await anyio.to_thread.run_sync((folder / "portrait").write_bytes, data)
    await anyio.to_thread.run_sync(storage.publish_video_inputs, job_id)  # a remote store: up it goes
    return header
