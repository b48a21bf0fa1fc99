"""The video job (video queue): `models.video_run.run_video` on the worker's warm models.

Resumable: its work files live in storage's video folder of the job (landmarks, one file per finished
chunk of frames), so a job re-run after its worker died (rq re-queues it) skips what is done. Cancel:
the API sets the cancel key; the run stops before its next frame or chunk. Progress goes to the job
record with `detail` (frames done, total, ETA).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from models.alignment import FaceAligner, align_landmarks
from models.attribute_generator import AttributeAwareGenerator
from models.directions import DirectionError, apply_edits
from models.errors import InputError
from models.images import load_image
from models.stylizer import IncompatibleModels
from models.video import VideoConfig, VideoStylizer
from models.video_io import SUFFIXES
from models.video_run import VideoCanceled, run_video
from service.contract import AnimateJob, cancel_key
from service.jobmetrics import count_failure
from workers.runtime import Runtime, StyleUnavailable, get_runtime

log = logging.getLogger("agilegan.worker")


def animate_job(payload: dict[str, Any]) -> dict[str, Any]:
    rt = get_runtime()
    job = AnimateJob.model_validate(payload)
    record = rt.jobs.get(job.job_id) or {}
    if record.get("status") in ("succeeded", "canceled"):
        return {"skipped": record["status"]}
    if not record or not rt.jobs.mark_running(job.job_id, rt.worker_name):
        return {"skipped": "deleted"}
    try:
        result = _animate(rt, job)
    except VideoCanceled:
        rt.jobs.mark_canceled(job.job_id)
        rt.storage.delete_video_work(job.job_id)
        return {"canceled": True}
    except (InputError, StyleUnavailable, IncompatibleModels, DirectionError, FileNotFoundError) as e:
        code = getattr(e, "code", "edit_unavailable" if isinstance(e, DirectionError) else "style_unavailable")
        rt.jobs.mark_failed(job.job_id, code, str(e))
        count_failure(rt.redis, code)
        rt.storage.delete_video_work(job.job_id)
        return {"failed": code}
    if rt.jobs.mark_succeeded(job.job_id, result):
        rt.storage.delete_video_work(job.job_id)
    else:  # canceled or deleted during the last step
        rt.storage.delete_job_files(job.job_id)
    return result


def _animate(rt: Runtime, job: AnimateJob) -> dict[str, Any]:
    folder = rt.storage.video_dir(job.job_id)
    # 1. The style's models, the edits, the renderer (structure, strength; constant noise).
    stylizer = rt.stylizer(job.style)
    edits = rt.edits(job.style, job.edits)

    @torch.no_grad()
    def render(wplus: torch.Tensor) -> torch.Tensor:
        wplus = apply_edits(wplus, edits)
        if isinstance(stylizer.generator, AttributeAwareGenerator):
            with stylizer.autocast():  # the worker's inference precision (AGILEGAN_INFERENCE_PRECISION)
                return stylizer.generator(wplus, branch=stylizer.default_branch, space="wplus", noise="const").float()
        return stylizer.render(wplus, job.structure, job.strength, "const")  # compiled programs when warmed

    config = VideoConfig(mode=job.mode, output=job.output, size=job.size, batch=rt.settings.video_batch)
    # 2. The portrait (retarget), aligned from the landmarks found at upload.
    portrait = photo = None
    if job.mode == "retarget":
        photo = load_image((folder / "portrait").read_bytes(), rt.settings.max_pixels).image
        side = max(job.size, stylizer.inverter.config.encoder.input_size)
        portrait = align_landmarks(photo, job.portrait_landmarks, side, rt.settings.align_transform_size)
    n = stylizer.generator.n_latent
    video = VideoStylizer(stylizer.inverter, render, n, config, portrait, photo, encode=stylizer.encode)
    limits = rt.settings.video_limits()

    # 3. Run in resumable chunks, reporting frames and ETA; stop when canceled or shutting down.
    def progress(info: dict[str, Any]) -> None:
        total = max(info["total"], 1)
        share = 0.1 if info["stage"] == "finding faces" else 0.95 if info["stage"] == "encoding" else 0.85
        base = 0.0 if info["stage"] == "finding faces" else 0.1
        fraction = base + share * info["done"] / total if info["stage"] != "encoding" else 0.95
        detail = {"frames_done": info["done"], "frames_total": info["total"]}
        if "eta_s" in info:
            detail["eta_s"] = round(info["eta_s"], 1)
        rt.jobs.progress(job.job_id, info["stage"], min(fraction, 0.99), detail)

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
            limits,
            progress=progress,
            should_stop=should_stop,
            chunk_frames=rt.settings.video_chunk_frames,
            fps=job.fps,
        )
        rt.storage.write_result(job.job_id, job.format, out.read_bytes())
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
    }
