"""The style-training job (train queue): exemplars from storage → `models.transfer_run.train_style`.

Resumable: a re-queued job (its worker died) finds `train_state/` in the style directory and goes on
from the last checkpoint. Cancel: the API sets a cancel key; training stops at its next step and the
style is marked canceled (its directory holds no published weights). Progress (step, losses, score
curve, ETA) goes to a Redis hash that `GET /v1/styles/{id}` reads, throttled to once a second.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from models import checkpoints
from models.alignment import align_landmarks
from models.configs import TransferConfig
from models.discriminator import Discriminator
from models.errors import InputError
from models.exemplars import ExemplarSet
from models.images import load_image
from models.stylegan2 import Generator
from models.stylizer import to_image
from models.transfer_run import TrainingCanceled, train_style
from service.contract import TrainJob, style_cancel_key, style_progress_key
from service.jobmetrics import count_failure
from workers.jobs import failure_code
from workers.runtime import Runtime, get_runtime
from workers.style_install import InstallError, install_lpips

log = logging.getLogger("agilegan.train")


class WorkerShutdown(Exception):
    """Raised to rq so that the checkpointed job is re-queued (its Retry budget allows for redeploys)."""


def train_style_job(payload: dict[str, Any]) -> dict[str, Any]:
    rt = get_runtime()
    job = TrainJob.model_validate(payload)
    if rt.registry.read_style_meta(job.style_id).get("status") in ("ready", "canceled", "retired"):
        return {"skipped": True}
    rt.jobs.mark_running(job.job_id, rt.worker_name)
    rt.registry.update_style_meta(job.style_id, status="training")
    try:
        result = _train(rt, job)
    except TrainingCanceled as e:
        if not rt.redis.exists(style_cancel_key(job.style_id)):  # the worker is shutting down (SIGTERM)
            rt.registry.update_style_meta(job.style_id, status="pending")
            raise WorkerShutdown("training checkpointed for a worker shutdown; it resumes on the next worker") from e
        rt.registry.update_style_meta(job.style_id, status="canceled")
        rt.jobs.mark_canceled(job.job_id, "training canceled by an operator")
        rt.storage.delete_style_upload(job.style_id)
        return {"canceled": True}
    except (InputError, ValueError) as e:
        code = getattr(e, "code", "invalid_training_input")
        rt.registry.update_style_meta(job.style_id, status="failed", error={"code": code, "message": str(e)[:500]})
        rt.jobs.mark_failed(job.job_id, code, str(e))
        count_failure(rt.redis, code)
        rt.storage.delete_style_upload(job.style_id)
        return {"failed": code}
    rt.registry.update_style_meta(
        job.style_id, status="ready", training=result, ready_at=datetime.datetime.now(datetime.UTC).isoformat()
    )
    rt.jobs.mark_succeeded(job.job_id, result)
    rt.storage.delete_style_upload(job.style_id)  # the exemplars served their purpose
    return result


def on_train_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """rq failure callback: a job rq will retry shows as queued again; once no retry is left, the job
    and its style are marked failed."""
    rt = get_runtime()
    code, message = failure_code(exc_type, exc_value, "training_error")
    if job.retries_left:
        rt.jobs.mark_requeued(job.id, message)
        return
    rt.jobs.mark_failed(job.id, code, message)
    style_id = (job.args[0] if job.args else {}).get("style_id")
    if style_id:
        rt.registry.update_style_meta(style_id, status="failed", error={"code": code, "message": message})
        rt.storage.delete_style_upload(style_id)
    count_failure(connection, code)


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
    size = source_g.config.size
    # 2. The exemplar crops, from the landmarks found at upload.
    manifest, files = rt.storage.read_style_upload(job.style_id)
    crops, labels, names = [], [], []
    for i, (entry, data) in enumerate(zip(manifest["files"], files)):
        _report_stage(rt, job, "aligning exemplars", i, len(files))
        photo = load_image(data, rt.settings.max_pixels).image
        crop = align_landmarks(photo, entry["landmarks"], size, min(4096, rt.settings.align_transform_size)).image
        crops.append(torch.from_numpy(np.asarray(crop, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
        labels.append(entry["label"])
        names.append(entry["name"])
    exemplars = ExemplarSet(torch.stack(crops), labels, names)
    overrides = {**_perceptual(rt, job), **job.overrides}
    config = TransferConfig().with_overrides(overrides)
    out = rt.registry.style_dir(job.style_id)
    preview = rt.registry.preview_path(job.style_id)
    preview_latents = torch.randn(
        4, source_g.config.n_latent, source_g.config.style_dim, generator=torch.Generator().manual_seed(1234)
    ).to(rt.device)
    last = {"t": 0.0}

    # 3. Train, reporting progress and writing a preview of the generator at each evaluation.
    def progress(info: dict[str, Any]) -> None:
        now = time.monotonic()
        if info["model"] is not None:
            _write_preview(info["model"], source_g, preview_latents, preview)
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
            p.hset(style_progress_key(job.style_id), mapping=fields)
            if info["score"] is not None:
                p.rpush(
                    style_progress_key(job.style_id) + ":curve",
                    json.dumps({"step": info["step"], "score": info["score"]}),
                )
            p.expire(style_progress_key(job.style_id), 7 * 86400)
            p.execute()
        rt.jobs.progress(job.job_id, "training", info["step"] / info["max_steps"])

    def should_stop() -> bool:  # canceled by an operator, or the worker got SIGTERM
        return rt.shutting_down or bool(rt.redis.exists(style_cancel_key(job.style_id)))

    result = train_style(
        source_g,
        source_d,
        exemplars,
        config,
        out,
        device=rt.device,
        progress=progress,
        should_stop=should_stop,
        micro_batch=rt.settings.train_micro_batch or None,
    )
    _write_preview(checkpoints.load(out, device=rt.device), source_g, preview_latents, preview)
    return {
        "steps": result.steps,
        "best_step": result.best_step,
        "best_score": result.best_score,
        "stop_reason": result.stop_reason,
        "branches": result.branches,
        "perceptual": result.perceptual,
        "exemplars": len(exemplars),
        # the score curve, for the console's chart of a finished style (the full one is in training.json)
        "curve": [{"step": c["step"], "score": c["score"], "terms": c["terms"]} for c in result.curve],
    }


@torch.no_grad()
def _write_preview(style: nn.Module, source_g: Generator, latents: torch.Tensor, path) -> None:
    """Top row: fixed FFHQ portraits (the source generator); bottom row: the same latents through
    `style` (the generator of the latest evaluation during training, the published one after)."""
    w = source_g.style.map_per_layer(latents)
    top = source_g(w, space="wplus")
    kwargs = {"branch": style.attribute_config.default_branch} if hasattr(style, "attribute_config") else {}
    bottom = style(w, space="wplus", **kwargs)
    tiles = [to_image(t) for t in torch.cat([top, bottom])]
    size = tiles[0].size[0]
    grid = Image.new("RGB", (size * len(latents), size * 2))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % len(latents)) * size, (i // len(latents)) * size))
    tmp = path.with_name(".preview.png")
    grid.save(tmp)
    tmp.replace(path)
