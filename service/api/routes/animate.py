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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, Field

from service.api.deps import (
    ClientDep,
    FacesDep,
    JobQueuesDep,
    JobViewsDep,
    RateBudgetDep,
    RegistryDep,
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
from service.api.schemas import ERROR_RESPONSES, JobStatus, null_is_none
from service.api.style_policy import SIZES, ready_style, strength_controls
from service.platform.contract import AnimateJob
from service.platform.job_kinds import ANIMATE
from service.platform.registry import Registry
from service.platform.settings import Settings
from service.platform.storage import Storage
from service.portrait.media.video_io import VideoInfo, check_limits, probe

router = APIRouter(prefix="/v1", tags=["video"], responses=ERROR_RESPONSES)


def _save_upload(upload: UploadFile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    upload.file.seek(0)
    with open(path, "wb") as f:
        shutil.copyfileobj(upload.file, f, 1 << 20)


@router.post("/animate", status_code=202, response_model=JobStatus, summary="Stylize a video, or retarget a portrait")
async def animate(
    principal: ClientDep,
    settings: SettingsDep,
    views: JobViewsDep,
    storage: StorageDep,
    registry: RegistryDep,
    queues: JobQueuesDep,
    finder: FacesDep,
    budget: RateBudgetDep,
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
    # 1. The style, its controls and edits; a portrait when retargeting; the key's budget.
    callback = webhook_spec(settings, webhook, webhook_events)
    request = {"style": style, "mode": mode, "output": output, "format": format, "size": size, "fps": fps}
    payload = _checked_payload(registry, request, structure, strength, edits, faces, portrait is not None)
    await anyio.to_thread.run_sync(budget.charge, principal)
    job_id = payload.job_id
    try:
        # 2. The video to disk, its header against the limits (before any frame is decoded); the portrait's face.
        inputs = VideoInputs(finder, storage, settings)
        header = await _store_inputs(inputs, payload, video, portrait)
        # 3. Record and queue on the video queue (under the queue cap).
        options = {**payload.model_dump(exclude={"job_id", "portrait_landmarks", "fps"}), "frames": header.frames}
        options["fps"] = header.fps
        await anyio.to_thread.run_sync(queues.submit, ANIMATE, payload, principal.key_id, options, callback)
    except BaseException:
        storage.delete_video_work(job_id)
        raise
    return views.accepted(job_id, queued_record(ANIMATE.name, options, callback))


def _checked_payload(
    registry: Registry,
    request: dict,
    structure: int | None,
    strength: float,
    edits: str | None,
    faces: str,
    has_portrait: bool,
) -> AnimateJob:
    """The job's payload, its options checked (`request`: the form's style, mode, output, format, size and
    fps); 4xx ApiErrors otherwise."""
    if request["size"] not in SIZES:
        raise ApiError(422, "invalid_request", "size: must be 256, 512 or 1024")
    info = ready_style(registry, request["style"])
    structure, strength = strength_controls(info, structure, strength)
    edit_specs = parse_edits(edits, registry, info)
    if request["mode"] == "retarget" and not has_portrait:
        raise ApiError(422, "portrait_required", "mode retarget animates a portrait: send it as `portrait`")
    if faces == "all" and request["mode"] == "retarget":
        raise ApiError(422, "faces_need_stylize_mode", "faces=all stylizes every face of the video: mode=stylize")
    group_option(faces, request["output"])  # faces=all needs output=full
    return AnimateJob(
        job_id=uuid.uuid4().hex, structure=structure, strength=strength, edits=edit_specs, faces=faces, **request
    )


@dataclass(frozen=True)
class VideoInputs:
    """What storing a video job's inputs uses: the face finder (a portrait), the storage, the limits."""

    finder: FaceFinder
    storage: Storage
    settings: Settings


async def _store_inputs(
    inputs: VideoInputs, payload: AnimateJob, video: UploadFile, portrait: UploadFile | None
) -> VideoInfo:
    """The video in the job's folder, checked against the limits by its header; the portrait (a photo:
    the image cap, not the video one) with its face's landmarks set on `payload`."""
    settings, storage, job_id = inputs.settings, inputs.storage, payload.job_id
    folder = storage.video_dir(job_id)
    limits = settings.video_limits()
    await anyio.to_thread.run_sync(_save_upload, video, folder / "video")
    header = await anyio.to_thread.run_sync(probe, folder / "video", payload.fps, limits)
    check_limits(header, limits)
    if portrait is not None:
        data = await portrait.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(413, "payload_too_large", f"portrait: at most {settings.max_upload_bytes} bytes")
        landmarks = await inputs.finder.landmarks(data, settings.max_pixels, settings.min_face_size, 0)
        payload.portrait_landmarks = landmarks
        await anyio.to_thread.run_sync((folder / "portrait").write_bytes, data)
    await anyio.to_thread.run_sync(storage.publish_video_inputs, job_id)  # a remote store: up it goes
    return header
