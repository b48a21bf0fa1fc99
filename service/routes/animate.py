"""Video jobs: stylize every frame of a video, or drive a portrait with a video's motion (retarget).

The upload streams to the job's storage folder; its container header is read there (duration, frame
count, frame size) and a video over the limits is refused before any frame is decoded. To retarget,
the portrait's face is found now, as for `POST /v1/stylize`. Jobs run on the `video` queue; their
status carries `detail` (frames done, total, ETA) and they resume from their last finished chunk of
frames after a worker dies.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Annotated, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, Field
from rq import Callback, Retry

from models.video_io import check_limits, probe
from service.admission import enqueue_capped
from service.contract import ANIMATE_FUNCTION, JOB_FAILURE_CALLBACK, QUEUED, VIDEO_QUEUE, AnimateJob
from service.deps import ClientDep, JobsDep, RegistryDep, StorageDep, charge_rate_limit
from service.edits import parse_edits
from service.errors import ApiError
from service.job_views import accepted
from service.schemas import ERROR_RESPONSES, JobStatus, null_is_none
from service.style_policy import SIZES, ready_style, strength_controls

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
    style: Annotated[str, Form(min_length=1, max_length=64)],
    portrait: Annotated[
        UploadFile | None, BeforeValidator(null_is_none), File(description="retarget: the portrait to animate")
    ] = None,
    mode: Annotated[Literal["stylize", "retarget"], Form()] = "stylize",
    output: Annotated[
        Literal["full", "aligned"], Form(description="pasted back into each frame, or the crops")
    ] = "full",
    format: Annotated[Literal["mp4", "webm", "gif", "zip"], Form()] = "mp4",
    size: Annotated[int, Form(description="aligned side: 256, 512 or 1024", json_schema_extra={"enum": SIZES})] = 256,
    fps: Annotated[
        Annotated[float, Field(gt=0, le=120, allow_inf_nan=False)] | None,
        BeforeValidator(null_is_none),
        Form(description="zip input"),
    ] = None,
    structure: Annotated[
        Annotated[int, Field(ge=0, le=8)] | None, BeforeValidator(null_is_none), Form(description="layer swap")
    ] = None,
    strength: Annotated[float, Form(ge=0.0, le=1.0)] = 1.0,
    edits: Annotated[
        Annotated[str, Field(max_length=4000)] | None, BeforeValidator(null_is_none), Form(description="see /stylize")
    ] = None,
) -> JSONResponse:
    settings = request.app.state.settings
    if size not in SIZES:
        raise ApiError(422, "invalid_request", "size: must be 256, 512 or 1024")
    # 1. The style, its controls and edits; a portrait when retargeting.
    info = ready_style(registry, style)
    structure, strength = strength_controls(info, structure, strength)
    edit_specs = parse_edits(edits, registry, info)
    if mode == "retarget" and portrait is None:
        raise ApiError(422, "portrait_required", "mode retarget animates a portrait: send it as `portrait`")
    await anyio.to_thread.run_sync(charge_rate_limit, request, principal)
    # 2. The video to disk, its header against the limits (before any frame is decoded).
    job_id = uuid.uuid4().hex
    folder = storage.video_dir(job_id)
    limits = settings.video_limits()
    try:
        await anyio.to_thread.run_sync(_save_upload, video, folder / "video")
        header = await anyio.to_thread.run_sync(probe, folder / "video", fps, limits)
        check_limits(header, limits)
        landmarks = None
        if portrait is not None:  # a photo: the image cap, not the video one
            data = await portrait.read(settings.max_upload_bytes + 1)
            if len(data) > settings.max_upload_bytes:
                raise ApiError(413, "payload_too_large", f"portrait: at most {settings.max_upload_bytes} bytes")
            landmarks = await request.app.state.faces.landmarks(data, settings.max_pixels, settings.min_face_size, 0)
            await anyio.to_thread.run_sync((folder / "portrait").write_bytes, data)
        # 3. Record and enqueue on the video queue (under the queue cap).
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
            portrait_landmarks=landmarks,
            fps=fps,
        )
        options = {
            "style": style,
            "mode": mode,
            "output": output,
            "format": format,
            "size": size,
            "structure": structure,
            "strength": strength,
            "edits": [e.model_dump() for e in edit_specs],
            "frames": header.frames,
            "fps": header.fps,
        }
        queue = request.app.state.queues[VIDEO_QUEUE]

        def enqueue() -> None:
            jobs.create(job_id, principal.key_id, "animate", options)
            queue.enqueue(
                ANIMATE_FUNCTION,
                payload.model_dump(),
                job_id=job_id,
                job_timeout=VIDEO_TIMEOUT_S,
                result_ttl=settings.result_ttl_s,
                failure_ttl=settings.result_ttl_s,
                retry=Retry(max=settings.job_retries) if settings.job_retries else None,
                on_failure=Callback(JOB_FAILURE_CALLBACK),
            )

        await anyio.to_thread.run_sync(
            enqueue_capped, request.app.state.redis, queue, settings.max_queue_depth, enqueue
        )
    except BaseException:
        storage.delete_video_work(job_id)
        raise
    record = {"status": QUEUED, "kind": "animate", "created_at": time.time(), "options": options}
    return accepted(request, job_id, record)
