"""The animate kind (video queue): `models.inference.video_run.run_video` on the serving cache's warm models.

Resumable: its work files live in storage's video folder of the job (landmarks, one file per finished
chunk of frames), so a job re-run after its worker died (rq re-queues it) skips what is done. Cancel:
the API sets the cancel key; the run stops before its next frame or chunk. Progress goes to the job
record with `detail` (frames done, total, ETA).
"""

from __future__ import annotations

import logging
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from models.inference.directions import DirectionError
from models.inference.pipeline import IncompatibleModels, RenderRequest
from models.inference.video import VideoConfig, VideoStylizer
from models.inference.video_run import VideoCanceled, run_video
from service.platform import job_kinds
from service.platform.contract import AnimateJob
from service.platform.redis_keys import cancel_key
from service.portrait.errors import InputError
from service.portrait.media.alignment import FaceAligner, align_landmarks
from service.portrait.media.images import load_image
from service.portrait.media.video_io import SUFFIXES
from workers.context import JobContext
from workers.lifecycle import Outcome, WorkerKind, record_crash, run_job
from workers.serving.cache import ServingCache, StyleUnavailable, serving_cache

log = logging.getLogger("agilegan.worker")


class AnimateKind(WorkerKind):
    def cleanup(self, ctx: JobContext, job: AnimateJob, outcome: Outcome) -> None:
        if outcome == "lost":  # canceled or deleted during the last step
            ctx.storage.delete_job_files(job.job_id)
        else:
            ctx.storage.delete_video_work(job.job_id)


ANIMATE = AnimateKind(
    job_kinds.ANIMATE,
    permanent=(InputError, StyleUnavailable, IncompatibleModels, DirectionError, FileNotFoundError),
    default_code="style_unavailable",
    codes=((DirectionError, "edit_unavailable"),),
    canceled=(VideoCanceled,),
)


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """The job function (`job_kinds.ANIMATE.function`)."""
    return run_job(ANIMATE, payload, lambda ctx, job: _animate(ctx, serving_cache(), job))


def on_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """The rq failure callback (`job_kinds.ANIMATE.on_failure`)."""
    record_crash(ANIMATE, job, connection, exc_type, exc_value)


def _animate(ctx: JobContext, cache: ServingCache, job: AnimateJob) -> dict[str, Any]:
    folder = ctx.storage.fetch_video_inputs(job.job_id)  # from a remote store when this machine lacks them
    # 1. The style's models and the edits; the request (structure, strength, edits; constant noise).
    served = cache.serve(job.style, job.edits)
    stylizer = served.stylizer
    config = VideoConfig(mode=job.mode, output=job.output, size=job.size, batch=ctx.settings.video_batch)
    # 2. The portrait (retarget), aligned from the landmarks found at upload.
    portrait = photo = None
    if job.mode == "retarget":
        photo = load_image((folder / "portrait").read_bytes(), ctx.settings.max_pixels).image
        side = max(job.size, stylizer.inverter.config.encoder.input_size)
        portrait = align_landmarks(photo, job.portrait_landmarks, side, ctx.settings.align_transform_size)
    request = RenderRequest(structure=job.structure, strength=job.strength, edits=tuple(served.edits))
    video = VideoStylizer(stylizer, request, config, portrait, photo)

    # 3. Run in resumable chunks, reporting frames and ETA; stop when canceled or shutting down.
    def should_stop() -> bool:
        return bool(ctx.redis.exists(cancel_key(job.job_id)))

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        out = Path(tmp) / f"out{SUFFIXES[job.format]}"
        result = run_video(
            folder / "video",
            out,
            job.format,
            video,
            FaceAligner(ctx.aligner_config),
            folder / "work",
            ctx.settings.video_limits(),
            progress=lambda info: _report(ctx, job, info),
            should_stop=should_stop,
            chunk_frames=ctx.settings.video_chunk_frames,
            fps=job.fps,
            saved=partial(ctx.storage.checkpoint_video_work, job.job_id),  # resumable on another machine
            max_faces=ctx.settings.max_faces if job.faces == "all" else 0,
        )
        ctx.storage.write_result_file(job.job_id, job.format, out)
    return {
        "mode": job.mode,
        "format": job.format,
        "frames": result.frames,
        "stylized": result.stylized,
        "bridged": result.bridged,
        "passed_through": result.passed_through,
        "fps": result.fps,
        "chunks_resumed": result.chunks_resumed,
        "seconds": result.seconds,
        "edits": [e.model_dump() for e in job.edits],
        **({"tracks": result.tracks} if job.faces == "all" else {}),
    }


def _report(ctx: JobContext, job: AnimateJob, info: dict[str, Any]) -> None:
    """A progress report of `run_video` into the job record: stage, fraction, frames done and total, ETA."""
    total = max(info["total"], 1)
    share = 0.1 if info["stage"] == "finding faces" else 0.95 if info["stage"] == "encoding" else 0.85
    base = 0.0 if info["stage"] == "finding faces" else 0.1
    fraction = base + share * info["done"] / total if info["stage"] != "encoding" else 0.95
    detail = {"frames_done": info["done"], "frames_total": info["total"]}
    if "eta_s" in info:
        detail["eta_s"] = round(info["eta_s"], 1)
    ctx.jobs.progress(job.job_id, info["stage"], min(fraction, 0.99), detail)
