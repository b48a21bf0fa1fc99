"""What the API and the workers agree on: queue names, job payloads, the job and style state vocabularies.

Torch-free. The job kinds themselves (queue, job function, timeout, retries) are service/platform/job_kinds.py;
the Redis keys are service/platform/redis_keys.py.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

STYLIZE_QUEUE = "stylize"
TRAIN_QUEUE = "train"
VIDEO_QUEUE = "video"
QUEUES = (STYLIZE_QUEUE, TRAIN_QUEUE, VIDEO_QUEUE)
ALIGNED_SIZE = 1024  # the side at which workers align a photo's crop (then resized to the job's size)

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
STYLE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

OutputMode = Literal["aligned", "full"]
ImageFormat = Literal["png", "jpeg", "webp"]
CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "gif": "image/gif",
    "zip": "application/zip",
}
VideoFormat = Literal["mp4", "webm", "gif", "zip"]


class EditSpec(BaseModel):
    """One latent edit of a stylize job: direction `index` of the registry's `direction` set, `alpha`,
    on `layers` (None: the set's recommended layers, or all). Checked by the API (service/api/edits.py)."""

    direction: str = Field(pattern=STYLE_ID.pattern)
    index: int = Field(0, ge=0)
    alpha: float
    layers: list[int] | None = None


class GroupFace(BaseModel):
    """One face of a group photo (`faces=all`), found by the API: its box, and its landmarks when it is
    stylized (None: skipped, with the reason)."""

    box: list[float] = Field(min_length=4, max_length=4)  # left, top, right, bottom (photo pixels)
    landmarks: list[list[float]] | None = Field(None, min_length=68, max_length=68)
    skipped: Literal["too_small"] | None = None


class StylizeJob(BaseModel):
    """The payload of one stylize job (small: the image itself is in storage)."""

    job_id: str = Field(pattern=JOB_ID.pattern)
    style: str = Field(pattern=STYLE_ID.pattern)
    output: OutputMode = "aligned"
    format: ImageFormat = "png"
    size: Literal[256, 512, 1024] = 1024
    attribute: str = "auto"
    landmarks: list[list[float]] = Field(min_length=68, max_length=68)
    noise: Literal["const", "random", "zero"] = "const"
    structure: int = Field(0, ge=0, le=8)
    strength: float = Field(1.0, ge=0.0, le=1.0)
    edits: list[EditSpec] = Field(default_factory=list, max_length=8)
    faces: list[GroupFace] = Field(default_factory=list, max_length=64)  # faces=all (output=full); else []

    @property
    def face_landmarks(self) -> list[list[list[float]]]:
        """The landmarks of every face to stylize: the group's, or the one face's."""
        if not self.faces:
            return [self.landmarks]
        return [f.landmarks for f in self.faces if f.landmarks is not None]


class FitDirectionJob(BaseModel):
    """The payload of a direction fit (operator): photos uploaded under `upload_id`, labelled positive
    and negative, inverted with `encoder`, written to the registry as directions/<name>.npz."""

    job_id: str = Field(pattern=JOB_ID.pattern)
    name: str = Field(pattern=STYLE_ID.pattern)
    upload_id: str = Field(pattern=STYLE_ID.pattern)
    encoder: str = Field("base", pattern=STYLE_ID.pattern)


class TrainJob(BaseModel):
    """The payload of one training job; the exemplars and their landmarks are in storage."""

    job_id: str = Field(pattern=JOB_ID.pattern)
    style_id: str = Field(pattern=STYLE_ID.pattern)
    overrides: dict = Field(default_factory=dict)


# Job record statuses, as the API reports them.
class JobState(StrEnum):
    """A job record's `status` (our record in Redis, not rq's own status)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED)
FINISHED = (JobState.SUCCEEDED, JobState.CANCELED)  # a job re-run in one of these keeps its outcome


class StyleState(StrEnum):
    """A style's `status` in its style.json: pending → training → ready | failed | canceled; ready → retired."""

    PENDING = "pending"
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    CANCELED = "canceled"
    RETIRED = "retired"
    MISSING_ENCODER = "missing_encoder"  # shown, never stored: a ready style whose encoder is not installed


class AnimateJob(BaseModel):
    """The payload of a video job: the video (and, to retarget, a portrait) are in storage's video
    folder of the job; `portrait_landmarks` were found at upload."""

    job_id: str = Field(pattern=JOB_ID.pattern)
    style: str = Field(pattern=STYLE_ID.pattern)
    mode: Literal["stylize", "retarget"] = "stylize"
    output: OutputMode = "full"
    format: VideoFormat = "mp4"
    size: Literal[256, 512, 1024] = 256
    structure: int = Field(0, ge=0, le=8)
    strength: float = Field(1.0, ge=0.0, le=1.0)
    edits: list[EditSpec] = Field(default_factory=list, max_length=8)
    portrait_landmarks: list[list[float]] | None = None
    fps: float | None = Field(None, gt=0, le=120)  # a zip of frames: its frame rate
    faces: Literal["one", "all"] = "one"  # all: every face of every frame, tracked (stylize, output=full)
