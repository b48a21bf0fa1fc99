"""The stylize job (stylize queue), called by dotted path (`service.core.contract.STYLIZE_FUNCTION`).

It reads its small payload and does its numbered steps on the process's warm runtime; the lifecycle around
them (skip a finished job, running, retries, failed, canceled, succeeded) is `workers.lifecycle.run_job`.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from PIL import Image

from models.inference.directions import DirectionError
from models.inference.stylizer import IncompatibleModels
from service.core.contract import ALIGNED_SIZE, StylizeJob, cancel_key
from service.core.errors import InputError
from service.core.jobmetrics import observe
from service.core.media.alignment import align_landmarks, paste_back
from service.core.media.images import load_image
from service.core.storage import InputMissing
from workers.lifecycle import TRANSIENT_BACKOFF_S, JobCanceled, JobKind, Outcome, on_job_failure, run_job
from workers.runtime import Runtime, StyleUnavailable, get_runtime

log = logging.getLogger("agilegan.worker")


class StylizeKind(JobKind):
    def cleanup(self, rt: Runtime, job: StylizeJob, outcome: Outcome) -> None:
        if outcome == "lost" and rt.jobs.get(job.job_id) is None:
            rt.storage.delete_job_files(job.job_id)  # deleted during its last step: nothing of it may stay


STYLIZE = StylizeKind(
    "stylize",
    permanent=(InputError, InputMissing, StyleUnavailable, IncompatibleModels, DirectionError),
    default_code="style_unavailable",
    codes=((DirectionError, "edit_unavailable"),),
    transient_backoff_s=TRANSIENT_BACKOFF_S,
)
on_stylize_failure = on_job_failure  # the callback's path in jobs queued before workers/lifecycle.py


def stylize_job(payload: dict[str, Any]) -> dict[str, Any]:
    job = StylizeJob.model_validate(payload)
    timings: dict[str, float] = {}

    def work(rt: Runtime) -> dict[str, Any]:
        if "wait" not in timings:  # queued time, measured once (not again on a retry)
            created = (rt.jobs.get(job.job_id) or {}).get("created_at", time.time())
            timings["wait"] = max(0.0, time.time() - created)
        return _stylize(rt, job, timings)

    result = run_job(STYLIZE, job, work)
    if "timings" in result:  # succeeded: the stage latencies go to /metrics
        observe(get_runtime().redis, timings)
    return result


def _stylize(rt: Runtime, job: StylizeJob, timings: dict[str, float]) -> dict[str, Any]:
    clock = time.perf_counter()

    def step(name: str, fraction: float) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now
        if rt.redis.exists(cancel_key(job.job_id)):
            raise JobCanceled()
        rt.jobs.progress(job.job_id, name, fraction)

    # 1. The style's models (cached by the worker) and the edits: read once per job, or by its batch.
    prepared = rt.prepared.pop(job.job_id, None)  # made in a batch with other jobs (workers/batching.py)
    served = prepared.served if prepared is not None else rt.serve(job.style, job.edits)
    stylizer, edits = served.stylizer, served.edits
    branch = None if job.attribute == "auto" else job.attribute
    if branch is not None and branch not in stylizer.branches:
        raise StyleUnavailable(f"style {job.style!r} has no attribute branch {branch!r}")
    step("load", 0.1)
    if prepared is not None:
        photo, aligned, out = prepared.photo, prepared.aligned, prepared.stylized
        step("align", 0.3)
        step("generate", 0.8)
        timings.update(prepared.timings)
    else:
        # 2. The FFHQ crop, from the landmarks the API found at upload.
        photo = load_image(rt.storage.read_input(job.job_id), rt.settings.max_pixels).image
        aligned = align_landmarks(photo, job.landmarks, ALIGNED_SIZE, rt.settings.align_transform_size)
        step("align", 0.3)
        # 3. Encoder → z+ → source mapping → w+ (→ edited) → the style's generator.
        out = stylizer(
            aligned.image, branch=branch, noise=job.noise, structure=job.structure, strength=job.strength, edits=edits
        )
        step("generate", 0.8)
        timings.update(out.stages or {})  # the two parts of "generate"
    # 4. Resize, or paste back into the photo.
    if job.output == "full":
        image = paste_back(photo, out.image, aligned, rt.aligner_config.feather)
    elif out.image.size[0] != job.size:
        image = out.image.resize((job.size, job.size), Image.Resampling.LANCZOS)
    else:
        image = out.image
    step("postprocess", 0.9)
    # 5. Encode and store atomically.
    rt.storage.write_result(job.job_id, job.format, encode(image, job.format))
    step("store", 1.0)
    return _result(job, out, image, prepared.batch_size if prepared is not None else 1, timings)


def _result(job: StylizeJob, out: Any, image: Image.Image, batch_size: int, timings: dict[str, float]) -> dict:
    """The job's result as its record keeps it: what was rendered, how, and the stage timings."""
    return {
        "branch": out.branch,
        "branch_source": out.branch_source,
        "branch_confidence": out.confidence,
        "structure": out.structure,
        "strength": out.strength,
        "edits": [e.model_dump() for e in job.edits],
        "batch_size": batch_size,
        "compiled": out.compiled,
        "width": image.size[0],
        "height": image.size[1],
        "format": job.format,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }


def encode(image: Image.Image, fmt: str) -> bytes:
    """Deterministic encoding without metadata (no EXIF or GPS from the upload reaches the result)."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", optimize=False)
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=92, subsampling=0)
    else:
        image.save(buf, format="WEBP", quality=92, method=4)
    return buf.getvalue()
