"""The style-training job (train queue): exemplars from storage → `models.training.transfer_run.train_style`.

Resumable: a re-queued job (its worker died) finds `train_state/` in the style directory and goes on
from the last checkpoint. Cancel: the API sets a cancel key; training stops at its next step and the
style is marked canceled (its directory holds no published weights). Progress (step, losses, score
curve, ETA) goes to a Redis hash that `GET /v1/styles/{id}` reads, throttled to once a second.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.inference.pipeline import to_image
from models.inference.speed_choices import set_flag
from models.networks.discriminator import Discriminator
from models.networks.stylegan2 import Generator
from models.training.exemplars import ExemplarSet
from models.training.transfer_run import TrainingCanceled, train_style
from models.weights import checkpoints
from service.core.checkpoint_files import atomic_write_bytes
from service.core.configs import TransferConfig
from service.core.contract import StyleState, TrainJob, style_cancel_key, style_progress_key
from service.core.errors import InputError
from service.core.media.alignment import align_landmarks
from service.core.media.images import load_image
from service.core.objectstore import ObjectMissing
from workers.lifecycle import JobKind, Outcome, record_crash, run_job
from workers.runtime import Runtime
from workers.style_install import InstallError, install_lpips

log = logging.getLogger("agilegan.train")


class WorkerShutdown(Exception):
    """Raised to rq so that the checkpointed job is re-queued (its Retry budget allows for redeploys)."""


class TrainKind(JobKind):
    """A training job also keeps its style's record: training → ready | failed | canceled (or back to
    pending when the worker shuts down mid-run: the checkpointed job resumes on the next worker)."""

    def skip(self, rt: Runtime, job: TrainJob) -> str | None:
        status = rt.registry.read_style_meta(job.style_id).get("status")
        return status if status in (StyleState.READY, StyleState.CANCELED, StyleState.RETIRED) else None

    def start(self, rt: Runtime, job: TrainJob) -> bool:
        rt.jobs.mark_running(job.job_id, rt.worker_name)  # the style's record decides, not the job's
        rt.registry.update_style_meta(job.style_id, status=StyleState.TRAINING)
        return True

    def cancel(self, rt: Runtime, job: TrainJob, error: BaseException) -> dict[str, Any]:
        if not rt.redis.exists(style_cancel_key(job.style_id)):  # the worker is shutting down (SIGTERM)
            rt.registry.update_style_meta(job.style_id, status=StyleState.PENDING)
            raise WorkerShutdown("training checkpointed for a worker shutdown; it resumes on the next worker")
        rt.registry.update_style_meta(job.style_id, status=StyleState.CANCELED)
        rt.jobs.mark_canceled(job.job_id, "training canceled by an operator")
        return {"canceled": True}

    def failed(self, rt: Runtime, job: TrainJob, code: str, message: str) -> None:
        rt.registry.update_style_meta(
            job.style_id, status=StyleState.FAILED, error={"code": code, "message": message[:500]}
        )

    def publish(self, rt: Runtime, job: TrainJob, result: dict[str, Any]) -> None:
        ready_at = datetime.datetime.now(datetime.UTC).isoformat()
        meta = {**rt.registry.read_style_meta(job.style_id), "status": StyleState.READY}
        meta.update(training=result, ready_at=ready_at)
        # The bundle (weights and style.json) on a remote store before the record that makes every host
        # serve it: a worker that sees "ready" finds the bundle to pull.
        rt.registry.write_style_meta(job.style_id, meta, before_record=partial(rt.mirror.publish_style, job.style_id))

    def cleanup(self, rt: Runtime, job: TrainJob, outcome: Outcome) -> None:
        rt.storage.delete_style_upload(job.style_id)  # the exemplars served their purpose, or never will

    def crashed(self, rt: Runtime, payload: dict[str, Any], code: str, message: str) -> None:
        style_id = payload.get("style_id")
        if style_id:
            rt.registry.update_style_meta(style_id, status=StyleState.FAILED, error={"code": code, "message": message})
            rt.storage.delete_style_upload(style_id)


TRAIN = TrainKind(
    "train",
    permanent=(InputError, ValueError, ObjectMissing),
    default_code="invalid_training_input",
    canceled=(TrainingCanceled,),
    crash_code="training_error",
)


def train_style_job(payload: dict[str, Any]) -> dict[str, Any]:
    job = TrainJob.model_validate(payload)
    return run_job(TRAIN, job, lambda rt: _train(rt, job))


def on_train_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """rq failure callback (`TRAIN_FAILURE_CALLBACK`): once no retry is left, the job and its style fail."""
    record_crash(TRAIN, job, connection, exc_type, exc_value)


def _perceptual(rt: Runtime, job: TrainJob) -> dict[str, Any]:
    """The consistency term's LPIPS for this style: the registry's LPIPS-VGG, installed first when it is
    missing and AGILEGAN_TRAIN_LPIPS=auto (a machine with internet trains with real LPIPS), else the
    source-discriminator features (logged). Decided once per style and kept in its style.json, so a
    resumed run keeps the recipe it started with."""
    if "lpips_path" in job.overrides:
        return {}
    meta = rt.registry.read_style_meta(job.style_id)
    if "lpips_path" in meta:
        return {"lpips_path": meta["lpips_path"]}
    lpips_dir = rt.registry.lpips_dir
    if not (lpips_dir / "config.json").is_file() and rt.settings.train_lpips == "auto":
        _report_stage(rt, job, "downloading LPIPS", 0, 1)
        try:
            install_lpips(
                rt.settings.registry_dir,
                rt.settings.data_dir / "downloads",
                mirror=rt.settings.download_mirror,
                timeout=rt.settings.download_timeout_s,
            )
        except InstallError as e:
            log.warning("LPIPS-VGG could not be installed (%s): training uses source-discriminator features", e)
    path = str(lpips_dir) if (lpips_dir / "config.json").is_file() else None
    rt.registry.update_style_meta(job.style_id, lpips_path=path)
    return {"lpips_path": path}


def _report_stage(rt: Runtime, job: TrainJob, stage: str, done: int, total: int) -> None:
    """Progress before the first training step (loading, aligning exemplars): the operator sees the
    job working from its first second, not after minutes of silence."""
    progress = style_progress_key(job.style_id)
    with rt.redis.pipeline() as p:
        p.hset(progress, mapping={"stage": stage, "stage_done": done, "stage_total": total})
        p.expire(progress, 7 * 86400)
        p.execute()
    rt.jobs.progress(job.job_id, stage, 0.0)


def _train(rt: Runtime, job: TrainJob) -> dict[str, Any]:
    # 1. The source generator and discriminator of the registry.
    _report_stage(rt, job, "loading", 0, 1)
    base = rt.registry.source_generator_dir
    source_g = checkpoints.load(base, expected=Generator, device=rt.device)
    source_d = checkpoints.load(base / "discriminator", expected=Discriminator, device=rt.device)
    # 2. The exemplar crops, from the landmarks found at upload; the recipe.
    exemplars = _exemplars(rt, job, source_g.config.size)
    config = TransferConfig().with_overrides({**_perceptual(rt, job), **job.overrides})
    out = rt.registry.style_dir(job.style_id)
    out.mkdir(parents=True, exist_ok=True)  # on another machine than the API's, the first file of the style here
    # the preview grid, also on a remote store for APIs on other machines
    publish = partial(rt.storage.write_preview, job.style_id)
    preview = Preview(source_g, rt.registry.preview_path(job.style_id), rt.device, publish)

    # 3. Train, reporting progress and writing a preview of the generator at each evaluation.
    def should_stop() -> bool:  # canceled by an operator, or the worker got SIGTERM
        return rt.shutting_down or bool(rt.redis.exists(style_cancel_key(job.style_id)))

    set_flag(source_d, "fold_blur", rt.flags["fold_blur"])  # AGILEGAN_FOLD_BLUR=on: D's blurs in its convolutions
    result = train_style(
        source_g,
        source_d,
        exemplars,
        config,
        out,
        device=rt.device,
        progress=_progress_reporter(rt, job, preview),
        should_stop=should_stop,
        micro_batch=rt.settings.train_micro_batch or None,
    )
    preview.write(checkpoints.load(out, device=rt.device))
    return {
        "steps": result.steps,
        "best_step": result.best_step,
        "best_score": result.best_score,
        "stop_reason": result.stop_reason,
        "branches": result.branches,
        "perceptual": result.perceptual,
        "precision": result.precision,
        "exemplars": len(exemplars),
        # the score curve, for the console's chart of a finished style (the full one is in training.json)
        "curve": [{"step": c["step"], "score": c["score"], "terms": c["terms"]} for c in result.curve],
    }


def _exemplars(rt: Runtime, job: TrainJob, size: int) -> ExemplarSet:
    """The uploaded exemplars as FFHQ crops of the generator's size, from the landmarks found at upload."""
    manifest, files = rt.storage.read_style_upload(job.style_id)
    crops, labels, names = [], [], []
    for i, (entry, data) in enumerate(zip(manifest["files"], files)):
        _report_stage(rt, job, "aligning exemplars", i, len(files))
        photo = load_image(data, rt.settings.max_pixels).image
        crop = align_landmarks(photo, entry["landmarks"], size, min(4096, rt.settings.align_transform_size)).image
        crops.append(torch.from_numpy(np.asarray(crop, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
        labels.append(entry["label"])
        names.append(entry["name"])
    return ExemplarSet(torch.stack(crops), labels, names)


def _progress_reporter(rt: Runtime, job: TrainJob, preview: Preview) -> Callable[[dict[str, Any]], None]:
    """Training's progress callback: the preview at each evaluation, and the live progress hash (step,
    losses, best score, ETA, the score curve) throttled to once a second except at evaluations."""
    last = {"t": 0.0}
    key = style_progress_key(job.style_id)

    def progress(info: dict[str, Any]) -> None:
        now = time.monotonic()
        if info["model"] is not None:
            preview.write(info["model"])
        if now - last["t"] < 1.0 and info["score"] is None:
            return
        last["t"] = now
        fields = {
            "stage": "training",
            "step": info["step"],
            "max_steps": info["max_steps"],
            "eta_s": round(info["eta_s"], 1),
            "losses": json.dumps({k: round(v, 5) for k, v in info["losses"].items()}),
            "best_score": info["best_score"] if info["best_score"] != float("inf") else "",
            **({"preview_step": info["step"]} if info["model"] is not None else {}),
        }
        with rt.redis.pipeline() as p:
            p.hset(key, mapping=fields)
            if info["score"] is not None:
                p.rpush(key + ":curve", json.dumps({"step": info["step"], "score": info["score"]}))
            p.expire(key, 7 * 86400)
            p.execute()
        rt.jobs.progress(job.job_id, "training", info["step"] / info["max_steps"])

    return progress


class Preview:
    """The operator's preview grid of a style: top row fixed FFHQ portraits (the source generator),
    bottom row the same latents through the style being trained (each evaluation's generator during
    training, the published one after)."""

    def __init__(
        self, source_g: Generator, path: Path, device: torch.device, publish: Callable[[bytes], None] | None = None
    ) -> None:
        """`publish`: called with the PNG's bytes after each write."""
        self.source_g, self.path, self.publish = source_g, path, publish
        generator = torch.Generator().manual_seed(1234)
        n_latent, style_dim = source_g.config.n_latent, source_g.config.style_dim
        self.latents = torch.randn(4, n_latent, style_dim, generator=generator).to(device)

    def write(self, style: nn.Module) -> None:
        png = _write_preview(style, self.source_g, self.latents, self.path)
        if self.publish is not None:
            self.publish(png)


@torch.no_grad()
def _write_preview(style: nn.Module, source_g: Generator, latents: torch.Tensor, path) -> bytes:
    """Top row: fixed FFHQ portraits (the source generator); bottom row: the same latents through
    `style` (the generator of the latest evaluation during training, the published one after). Written
    atomically to `path`; returns the PNG's bytes."""
    w = source_g.style.map_per_layer(latents)
    top = source_g(w, space="wplus")
    kwargs = {"branch": style.attribute_config.default_branch} if hasattr(style, "attribute_config") else {}
    bottom = style(w, space="wplus", **kwargs)
    tiles = [to_image(t) for t in torch.cat([top, bottom])]
    size = tiles[0].size[0]
    grid = Image.new("RGB", (size * len(latents), size * 2))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % len(latents)) * size, (i // len(latents)) * size))
    png = io.BytesIO()
    grid.save(png, format="PNG")
    atomic_write_bytes(path, png.getvalue())
    return png.getvalue()
