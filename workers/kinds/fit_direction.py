"""The fit_direction kind (train queue): two labelled photo sets → a supervised latent direction.

The API found each photo's landmarks at upload; here each is aligned (the FFHQ crop), inverted by the
chosen encoder to w+, and `models.inference.directions.fit_direction` fits InterFaceGAN's linear boundary. The
result, with its held-out accuracies and recommended layers, is written to the registry as
`directions/<name>.npz` in the encoder's w space, and recorded as the job's result.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from models.inference import directions
from models.networks.encoder import image_to_tensor
from service.platform import job_kinds
from service.platform.contract import ALIGNED_SIZE, FitDirectionJob
from service.platform.objectstore import ObjectMissing
from service.portrait.errors import InputError
from service.portrait.media.alignment import align_landmarks
from service.portrait.media.images import load_image
from workers.context import JobContext
from workers.lifecycle import Outcome, WorkerKind, record_crash, run_job
from workers.serving.cache import ServingCache, StyleUnavailable, serving_cache

log = logging.getLogger("agilegan.worker")


class FitDirectionKind(WorkerKind):
    def cleanup(self, ctx: JobContext, job: FitDirectionJob, outcome: Outcome) -> None:
        ctx.storage.delete_style_upload(job.upload_id)  # the labelled photos served their purpose


FIT_DIRECTION = FitDirectionKind(
    job_kinds.FIT_DIRECTION,
    permanent=(InputError, StyleUnavailable, directions.DirectionError, FileNotFoundError, ObjectMissing),
    default_code="fit_failed",
    canceled=(),
)


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """The job function (`job_kinds.FIT_DIRECTION.function`)."""
    return run_job(FIT_DIRECTION, payload, lambda ctx, job: _fit(ctx, serving_cache(), job))


def on_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """The rq failure callback (`job_kinds.FIT_DIRECTION.on_failure`)."""
    record_crash(FIT_DIRECTION, job, connection, exc_type, exc_value)


@torch.no_grad()
def _fit(ctx: JobContext, cache: ServingCache, job: FitDirectionJob) -> dict[str, Any]:
    # 1. The encoder whose w space the direction lives in.
    inverter = cache.inverter_for(job.encoder)
    w_space = ctx.registry.w_space(job.encoder)
    if w_space is None:
        raise StyleUnavailable(f"encoder {job.encoder!r} cannot be read")
    # 2. Each photo: the FFHQ crop from its landmarks → the encoder → w+ [1, L, D].
    manifest, files = ctx.storage.read_style_upload(job.upload_id)
    codes: dict[str, list[torch.Tensor]] = {"positive": [], "negative": []}
    for i, (entry, data) in enumerate(zip(manifest["files"], files)):
        photo = load_image(data, ctx.settings.max_pixels).image
        crop = align_landmarks(photo, entry["landmarks"], ALIGNED_SIZE, ctx.settings.align_transform_size).image
        x = image_to_tensor(crop, inverter.config.encoder.input_size).to(ctx.device)
        codes[entry["label"]].append(inverter(x).wplus.cpu())
        ctx.jobs.progress(job.job_id, "inverting", (i + 1) / (len(files) + 1))
    # 3. The linear boundary, per layer and pooled; written to the registry.
    fit = directions.fit_direction(torch.cat(codes["positive"]), torch.cat(codes["negative"]))
    info = {
        "accuracy": round(fit.accuracy, 4),
        "layer_accuracy": [round(a, 4) for a in fit.layer_accuracy],
        "examples": {label: len(c) for label, c in codes.items()},
        "encoder": job.encoder,
    }
    found = directions.DirectionSet(
        name=job.name,
        kind="supervised",
        vectors=fit.direction[None],
        w_space=w_space,
        layers=fit.recommended,
        alpha_range=(-3.0, 3.0),
        info=info,
    )
    found.save(ctx.registry.direction_path(job.name))
    log.info("direction %s: held-out accuracy %.3f, layers %s", job.name, fit.accuracy, fit.recommended)
    return {"direction": job.name, "layers": list(fit.recommended), **info}
