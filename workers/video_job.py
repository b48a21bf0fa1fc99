"""The video job (video queue): `models.inference.video_run.run_video` on the worker's warm models.

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
from service.core.contract import AnimateJob, cancel_key
from service.core.errors import InputError
from service.core.media.alignment import FaceAligner, align_landmarks
from service.core.media.images import load_image
from service.core.media.video_io import SUFFIXES
from workers.lifecycle import JobKind, Outcome, run_job
from workers.runtime import Runtime, StyleUnavailable

log = logging.getLogger("agilegan.worker")


class AnimateKind(JobKind):
    def cleanup(self, rt: Runtime, job: AnimateJob, outcome: Outcome) -> None:
        if outcome == "lost":  # canceled or deleted during the last step
            rt.storage.delete_job_files(job.job_id)
        else:
            rt.storage.delete_video_work(job.job_id)


ANIMATE = AnimateKind(
    "animate",
    permanent=(InputError, StyleUnavailable, IncompatibleModels, DirectionError, FileNotFoundError),
    default_code="style_unavailable",
    codes=((DirectionError, "edit_unavailable"),),
    canceled=(VideoCanceled,),
)


def animate_job(payload: dict[str, Any]) -> dict[str, Any]:
    job = AnimateJob.model_validate(payload)
    return run_job(ANIMATE, job, lambda rt: _animate(rt, job))


def _animate(rt: Runtime, job: AnimateJob) -> dict[str, Any]:
    folder = rt.storage.fetch_video_inputs(job.job_id)  # from a remote store when this machine lacks them
    # 1. The style's models and the edits; the request (structure, strength, edits; constant noise).
    served = rt.serve(job.style, job.edits)
    stylizer = served.stylizer
    config = VideoConfig(mode=job.mode, output=job.output, size=job.size, batch=rt.settings.video_batch)
    # 2. The portrait (retarget), aligned from the landmarks found at upload.
    portrait = photo = None
    if job.mode == "retarget":
        photo = load_image((folder / "portrait").read_bytes(), rt.settings.max_pixels).image
        side = max(job.size, stylizer.inverter.config.encoder.input_size)
        portrait = align_landmarks(photo, job.portrait_landmarks, side, rt.settings.align_transform_size)
    request = RenderRequest(structure=job.structure, strength=job.strength, edits=tuple(served.edits))
    video = VideoStylizer(stylizer, request, config, portrait, photo)

    # 3. Run in resumable chunks, reporting frames and ETA; stop when canceled or shutting down.
    def should_stop() -> bool:
        return bool(rt.redis.exists(cancel_key(job.job_id)))

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        out = Path(tmp) / f"out{SUFFIXES[job.format]}"
        result = run_video(
            folder / "video",
            out,
            job.format,
            video,
            FaceAligner(rt.aligner_config),
            folder / "work",
            rt.settings.video_limits(),
            progress=lambda info: _report(rt, job, info),
            should_stop=should_stop,
            chunk_frames=rt.settings.video_chunk_frames,
            fps=job.fps,
            saved=partial(rt.storage.checkpoint_video_work, job.job_id),  # resumable on another machine
            max_faces=rt.settings.max_faces if job.faces == "all" else 0,
        )
        rt.storage.write_result_file(job.job_id, job.format, out)
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


def _report(rt: Runtime, job: AnimateJob, info: dict[str, Any]) -> None:
    """A progress report of `run_video` into the job record: stage, fraction, frames done and total, ETA."""
    total = max(info["total"], 1)
    share = 0.1 if info["stage"] == "finding faces" else 0.95 if info["stage"] == "encoding" else 0.85
    base = 0.0 if info["stage"] == "finding faces" else 0.1
    fraction = base + share * info["done"] / total if info["stage"] != "encoding" else 0.95
    detail = {"frames_done": info["done"], "frames_total": info["total"]}
    if "eta_s" in info:
        detail["eta_s"] = round(info["eta_s"], 1)
    rt.jobs.progress(job.job_id, info["stage"], min(fraction, 0.99), detail)
