"""The train kind (train queue): a style's exemplars from storage → `models.training.transfer_run.train_style`.

Resumable: a re-queued job (its worker died) finds `train_state/` in the style directory and goes on
from the last checkpoint. Cancel: the API sets a cancel key; training stops at its next step and the
style is marked canceled (its directory holds no published weights). Progress (step, losses, score
curve, ETA) goes to a Redis hash that `GET /v1/styles/{id}` reads, throttled to once a second.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.inference.pipeline import to_image
from models.inference.speed_choices import initial_flag, set_flag
from models.networks.discriminator import Discriminator
from models.networks.stylegan2 import Generator
from models.training.exemplars import ExemplarSet
from models.training.transfer_run import TrainingCanceled, train_style
from models.weights import checkpoints
from service.platform import job_kinds
from service.platform.contract import StyleState, TrainJob
from service.platform.objectstore import ObjectMissing
from service.platform.redis_keys import style_cancel_key, style_curve_key, style_progress_key
from service.platform.registry import Registry
from service.portrait.checkpoint_files import atomic_write_bytes
from service.portrait.configs import TransferConfig
from service.portrait.errors import InputError
from service.portrait.media.alignment import align_landmarks
from service.portrait.media.images import load_image
from workers.context import JobContext, job_context
from workers.lifecycle import Outcome, WorkerKind, record_crash, run_job

log = logging.getLogger("agilegan.train")


class WorkerShutdown(Exception):
    """Raised to rq so that the checkpointed job is re-queued (its Retry budget allows for redeploys)."""


@dataclass
class StyleRecord:
    """A training style's style.json, read once per run and written at each transition."""

    registry: Registry
    style_id: str
    meta: dict[str, Any]

    @classmethod
    def load(cls, registry: Registry, style_id: str) -> StyleRecord:
        """FileNotFoundError when the style has no record (deleted)."""
        meta = registry.read_style_meta(style_id)
        meta.pop("id", None)
        return cls(registry, style_id, meta)

    def write(self, before_record: Callable[[], None] | None = None, **changes: Any) -> None:
        """`changes` into the record, then the record written (`before_record`: see `Registry.write_style_meta`)."""
        self.meta.update(changes)
        self.registry.write_style_meta(self.style_id, self.meta, before_record=before_record)


@dataclass(frozen=True)
class TrainKind(WorkerKind):
    """A training job also keeps its style's record (`record`, one per run): training → ready | failed |
    canceled (or back to pending when the worker shuts down mid-run: the checkpointed job resumes on the next
    worker)."""

    record: StyleRecord | None = None

    def skip(self, ctx: JobContext, job: TrainJob) -> str | None:
        status = self.record.meta.get("status")
        return status if status in (StyleState.READY, StyleState.CANCELED, StyleState.RETIRED) else None

    def start(self, ctx: JobContext, job: TrainJob) -> bool:
        ctx.jobs.mark_running(job.job_id, ctx.worker_name)  # the style's record decides, not the job's
        self.record.write(status=StyleState.TRAINING)
        return True

    def cancel(self, ctx: JobContext, job: TrainJob, error: BaseException) -> dict[str, Any]:
        if not ctx.redis.exists(style_cancel_key(job.style_id)):  # the worker is shutting down (SIGTERM)
            self.record.write(status=StyleState.PENDING)
            raise WorkerShutdown("training checkpointed for a worker shutdown; it resumes on the next worker")
        self.record.write(status=StyleState.CANCELED)
        ctx.jobs.mark_canceled(job.job_id, "training canceled by an operator")
        return {"canceled": True}

    def failed(self, ctx: JobContext, job: TrainJob, code: str, message: str) -> None:
        self.record.write(status=StyleState.FAILED, error={"code": code, "message": message[:500]})

    def publish(self, ctx: JobContext, job: TrainJob, result: dict[str, Any]) -> None:
        ready_at = datetime.datetime.now(datetime.UTC).isoformat()
        # The bundle (weights and style.json) on a remote store before the record that makes every host
        # serve it: a worker that sees "ready" finds the bundle to pull.
        publish = partial(ctx.mirror.publish_style, job.style_id)
        self.record.write(before_record=publish, status=StyleState.READY, training=result, ready_at=ready_at)

    def cleanup(self, ctx: JobContext, job: TrainJob, outcome: Outcome) -> None:
        ctx.storage.delete_style_upload(job.style_id)  # the exemplars served their purpose, or never will

    def crashed(self, ctx: JobContext, payload: dict[str, Any], code: str, message: str) -> None:
        style_id = payload.get("style_id")
        if style_id:
            ctx.registry.update_style_meta(style_id, status=StyleState.FAILED, error={"code": code, "message": message})
            ctx.storage.delete_style_upload(style_id)


TRAIN = TrainKind(
    job_kinds.TRAIN,
    permanent=(InputError, ValueError, ObjectMissing),
    default_code="invalid_training_input",
    canceled=(TrainingCanceled,),
    crash_code="training_error",
)


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """The job function (`job_kinds.TRAIN.function`): the style's record read once for the run."""
    style_id = TrainJob.model_validate(payload).style_id
    kind = dataclasses.replace(TRAIN, record=StyleRecord.load(job_context().registry, style_id))
    return run_job(kind, payload, lambda ctx, job: _train(ctx, kind.record, job))


def on_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """The rq failure callback (`job_kinds.TRAIN.on_failure`): once no retry is left, the job and its style
    fail."""
    record_crash(TRAIN, job, connection, exc_type, exc_value)


def _perceptual(ctx: JobContext, record: StyleRecord, job: TrainJob) -> dict[str, Any]:
    """The consistency term's LPIPS for this style: the registry's LPIPS-VGG when it is installed (the
    worker installs it at start with AGILEGAN_TRAIN_LPIPS=auto, `agilegan lpips install` by hand), else the
    source-discriminator features (logged). Decided once per style and kept in its style.json, so a resumed
    run keeps the recipe it started with."""
    if "lpips_path" in job.overrides:
        return {}
    if "lpips_path" in record.meta:
        return {"lpips_path": record.meta["lpips_path"]}
    lpips_dir = ctx.registry.lpips_dir
    path = str(lpips_dir) if (lpips_dir / "config.json").is_file() else None
    if path is None:
        log.warning("LPIPS-VGG is not installed (%s): training uses source-discriminator features", lpips_dir)
    record.write(lpips_path=path)
    return {"lpips_path": path}


def _report_stage(ctx: JobContext, job: TrainJob, stage: str, done: int, total: int) -> None:
    """Progress before the first training step (loading, aligning exemplars): the operator sees the
    job working from its first second, not after minutes of silence."""
    progress = style_progress_key(job.style_id)
    with ctx.redis.pipeline() as p:
        p.hset(progress, mapping={"stage": stage, "stage_done": done, "stage_total": total})
        p.expire(progress, 7 * 86400)
        p.execute()
    ctx.jobs.progress(job.job_id, stage, 0.0)


def _train(ctx: JobContext, record: StyleRecord, job: TrainJob) -> dict[str, Any]:
    # 1. The source generator and discriminator of the registry.
    _report_stage(ctx, job, "loading", 0, 1)
    base = ctx.registry.source_generator_dir
    source_g = checkpoints.load(base, expected=Generator, device=ctx.device)
    source_d = checkpoints.load(base / "discriminator", expected=Discriminator, device=ctx.device)
    # 2. The exemplar crops, from the landmarks found at upload; the recipe.
    exemplars = _exemplars(ctx, job, source_g.config.size)
    config = TransferConfig().with_overrides({**_perceptual(ctx, record, job), **job.overrides})
    out = ctx.registry.style_dir(job.style_id)
    out.mkdir(parents=True, exist_ok=True)  # on another machine than the API's, the first file of the style here
    # the preview grid, also on a remote store for APIs on other machines
    publish = partial(ctx.storage.write_preview, job.style_id)
    preview = Preview(source_g, ctx.registry.preview_path(job.style_id), ctx.device, publish)

    # 3. Train, reporting progress and writing a preview of the generator at each evaluation.
    def should_stop() -> bool:  # canceled by an operator, or the worker got SIGTERM
        return ctx.shutting_down or bool(ctx.redis.exists(style_cancel_key(job.style_id)))

    # AGILEGAN_FOLD_BLUR=on: D's blurs in its convolutions
    set_flag(source_d, "fold_blur", initial_flag("fold_blur", ctx.settings.fold_blur))
    result = train_style(
        source_g,
        source_d,
        exemplars,
        config,
        out,
        device=ctx.device,
        progress=_progress_reporter(ctx, job, preview),
        should_stop=should_stop,
        micro_batch=ctx.settings.train_micro_batch or None,
    )
    preview.write(checkpoints.load(out, device=ctx.device))
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


def _exemplars(ctx: JobContext, job: TrainJob, size: int) -> ExemplarSet:
    """The uploaded exemplars as FFHQ crops of the generator's size, from the landmarks found at upload."""
    manifest, files = ctx.storage.read_style_upload(job.style_id)
    crops, labels, names = [], [], []
    for i, (entry, data) in enumerate(zip(manifest["files"], files)):
        _report_stage(ctx, job, "aligning exemplars", i, len(files))
        photo = load_image(data, ctx.settings.max_pixels).image
        crop = align_landmarks(photo, entry["landmarks"], size, min(4096, ctx.settings.align_transform_size)).image
        crops.append(torch.from_numpy(np.asarray(crop, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
        labels.append(entry["label"])
        names.append(entry["name"])
    return ExemplarSet(torch.stack(crops), labels, names)


def _progress_reporter(ctx: JobContext, job: TrainJob, preview: Preview) -> Callable[[dict[str, Any]], None]:
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
        with ctx.redis.pipeline() as p:
            p.hset(key, mapping=fields)
            if info["score"] is not None:
                p.rpush(style_curve_key(job.style_id), json.dumps({"step": info["step"], "score": info["score"]}))
            p.expire(key, 7 * 86400)
            p.execute()
        ctx.jobs.progress(job.job_id, "training", info["step"] / info["max_steps"])

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
