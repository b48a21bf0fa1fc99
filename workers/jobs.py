"""rq job functions, called by dotted path (`service.contract.STYLIZE_FUNCTION`).

A job function reads its small payload, does its numbered steps on the process's warm runtime and
records the outcome in our job record. Permanent failures (bad input, unavailable style) are recorded
and *not* raised, so nothing retries them; transient errors are retried in process with backoff; what
is still failing is raised to rq, and `on_stylize_failure` records it once no rq retry is left (rq's
abandoned-job cleanup calls it too, for a job whose worker died).
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from PIL import Image
from redis.exceptions import ConnectionError as RedisConnectionError
from torch.cuda import OutOfMemoryError as TorchOOM

from models.alignment import align_landmarks, paste_back
from models.directions import DirectionError
from models.errors import InputError
from models.images import load_image
from models.stylizer import IncompatibleModels
from service.contract import ALIGNED_SIZE, StylizeJob, cancel_key
from service.jobmetrics import count_failure, observe
from service.storage import InputMissing
from workers.runtime import Runtime, StyleUnavailable, get_runtime

log = logging.getLogger("agilegan.worker")
# In-process retries with backoff for transient errors (storage hiccups, Redis reconnects, CUDA OOM).
# A worker that dies is different: rq re-queues its job at once (Retry without interval, so recovery
# does not wait for a scheduler).
TRANSIENT_BACKOFF_S = (1.0, 4.0)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, RedisConnectionError, TorchOOM)


class JobCanceled(Exception):
    """The client canceled the job; raised between steps."""


def stylize_job(payload: dict[str, Any]) -> dict[str, Any]:
    rt = get_runtime()
    job = StylizeJob.model_validate(payload)
    record = rt.jobs.get(job.job_id) or {}
    if record.get("status") in ("succeeded", "canceled"):
        return {"skipped": record["status"]}  # a re-run after success (abandoned-job mix-up): keep the result
    if not record or not rt.jobs.mark_running(job.job_id, rt.worker_name):
        return {"skipped": "deleted"}  # deleted by its owner before it ran (or its record expired)
    timings: dict[str, float] = {"wait": max(0.0, time.time() - record.get("created_at", time.time()))}
    for attempt in range(len(TRANSIENT_BACKOFF_S) + 1):
        try:
            result = _stylize(rt, job, timings)
            break
        except JobCanceled:
            rt.jobs.mark_canceled(job.job_id)
            return {"canceled": True}
        except (InputError, InputMissing, StyleUnavailable, IncompatibleModels, DirectionError) as e:
            code = "edit_unavailable" if isinstance(e, DirectionError) else getattr(e, "code", "style_unavailable")
            rt.jobs.mark_failed(job.job_id, code, str(e))
            count_failure(rt.redis, code)
            return {"failed": code}
        except TRANSIENT_ERRORS as e:
            if attempt == len(TRANSIENT_BACKOFF_S):
                raise  # rq records it (on_stylize_failure); a crash of the worker itself is retried by rq
            log.warning(
                "job %s: transient %s (%s); retrying in %.0f s",
                job.job_id,
                type(e).__name__,
                e,
                TRANSIENT_BACKOFF_S[attempt],
            )
            _release_gpu_memory()
            time.sleep(TRANSIENT_BACKOFF_S[attempt])
    if not rt.jobs.mark_succeeded(job.job_id, result):  # canceled or deleted during its last step
        if rt.jobs.get(job.job_id) is None:
            rt.storage.delete_job_files(job.job_id)  # deleted: nothing of it may stay
        return {"skipped": "canceled"}
    observe(rt.redis, timings)
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

    # 1. The style's models (cached by the worker).
    stylizer = rt.stylizer(job.style)
    branch = None if job.attribute == "auto" else job.attribute
    if branch is not None and branch not in stylizer.branches:
        raise StyleUnavailable(f"style {job.style!r} has no attribute branch {branch!r}")
    edits = rt.edits(job.style, job.edits)
    prepared = rt.prepared.pop(job.job_id, None)  # made in a batch with other jobs (workers/batching.py)
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
    return {
        "branch": out.branch,
        "branch_source": out.branch_source,
        "branch_confidence": out.confidence,
        "structure": out.structure,
        "strength": out.strength,
        "edits": [e.model_dump() for e in job.edits],
        "batch_size": prepared.batch_size if prepared is not None else 1,
        "compiled": out.compiled,
        "width": image.size[0],
        "height": image.size[1],
        "format": job.format,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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


def on_stylize_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """rq failure callback: a job rq will retry shows as queued again (its worker died, or a transient
    error outlived the in-process retries); once no retry is left, the failure is recorded."""
    code, message = failure_code(exc_type, exc_value, "internal_error")
    if job.retries_left:
        log.warning("job %s failed (%s); %d retries left", job.id, code, job.retries_left)
        get_runtime().jobs.mark_requeued(job.id, message)
        return
    get_runtime().jobs.mark_failed(job.id, code, message)
    count_failure(connection, code)


def failure_code(exc_type: Any, exc_value: Any, default: str) -> tuple[str, str]:
    """(code, message) for a job failure that rq reports: a dead worker, a timeout, or `default`."""
    name = getattr(exc_type, "__name__", str(exc_type))
    code = "worker_lost" if name == "AbandonedJobError" else "timeout" if "Timeout" in name else default
    return code, f"{name}: {exc_value}"[:300]
