"""The stylize kind (stylize queue): a portrait through the encoder and a style's generator.

It reads its small payload and does its numbered steps with the process's serving cache; the lifecycle around
them (skip a finished job, running, retries, failed, canceled, succeeded) is `workers.lifecycle.run_job`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from models.inference.directions import DirectionError
from models.inference.pipeline import IncompatibleModels
from service.platform import job_kinds
from service.platform.contract import StylizeJob
from service.platform.jobmetrics import observe
from service.platform.storage import InputMissing
from service.portrait.errors import InputError
from workers.context import JobContext, job_context
from workers.lifecycle import TRANSIENT_BACKOFF_S, JobCanceled, Outcome, WorkerKind, record_crash, run_job
from workers.serving.cache import ServingCache, StyleUnavailable, serving_cache
from workers.serving.stylize_pipeline import Encoded, Prepared, prepare

log = logging.getLogger("agilegan.worker")


class StylizeKind(WorkerKind):
    def cleanup(self, ctx: JobContext, job: StylizeJob, outcome: Outcome) -> None:
        if outcome == "lost" and ctx.jobs.get(job.job_id) is None:
            ctx.storage.delete_job_files(job.job_id)  # deleted during its last step: nothing of it may stay


STYLIZE = StylizeKind(
    job_kinds.STYLIZE,
    permanent=(InputError, InputMissing, StyleUnavailable, IncompatibleModels, DirectionError),
    default_code="style_unavailable",
    codes=((DirectionError, "edit_unavailable"),),
    transient_backoff_s=TRANSIENT_BACKOFF_S,
)


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """The job function (`job_kinds.STYLIZE.function`)."""
    timings: dict[str, float] = {}

    def work(ctx: JobContext, job: StylizeJob) -> dict[str, Any]:
        if "wait" not in timings:  # queued time, measured once (not again on a retry)
            created = (ctx.jobs.get(job.job_id) or {}).get("created_at", time.time())
            timings["wait"] = max(0.0, time.time() - created)
        return _stylize(ctx, serving_cache(), job, timings)

    result = run_job(STYLIZE, payload, work)
    if "timings" in result:  # succeeded: the stage latencies go to /metrics
        observe(job_context().redis, timings)
    return result


def on_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """The rq failure callback (`job_kinds.STYLIZE.on_failure`)."""
    record_crash(STYLIZE, job, connection, exc_type, exc_value)


def _stylize(ctx: JobContext, cache: ServingCache, job: StylizeJob, timings: dict[str, float]) -> dict[str, Any]:
    # 1-3. The style, the crop and the networks: made in a batch with other jobs (workers/serving/batching.py), or
    # now as a batch of one; the job's own failure (its code) is raised here.
    prepared = cache.prepared.pop(job.job_id, None) or prepare(ctx, cache, [job])[job.job_id]
    if isinstance(prepared, BaseException):
        raise prepared
    timings.update(prepared.timings)
    # 4. The result, post-processed and encoded in the CPU pool.
    encoded = prepared.encoded.result()
    timings["postprocess"] = encoded.seconds
    _step(ctx, job, "postprocess", 0.9)
    # 5. Store it atomically.
    started = time.perf_counter()
    ctx.storage.write_result(job.job_id, job.format, encoded.data)
    timings["store"] = time.perf_counter() - started
    _step(ctx, job, "store", 1.0)
    return _result(job, prepared, encoded, timings)


def _step(ctx: JobContext, job: StylizeJob, stage: str, fraction: float) -> None:
    """A stage reached: its progress, and the cancel check, in one round trip."""
    if ctx.jobs.advance([job.job_id], stage, fraction)[job.job_id] == "canceled":
        raise JobCanceled()


def _result(job: StylizeJob, prepared: Prepared, encoded: Encoded, timings: dict[str, float]) -> dict:
    """The job's result as its record keeps it: what was rendered, how, and the stage timings."""
    out, i = prepared.batch, prepared.index
    return {
        "branch": out.branches[i],
        "branch_source": out.branch_sources[i],
        "branch_confidence": out.confidences[i],
        "structure": out.structure,
        "strength": out.strength,
        "edits": [e.model_dump() for e in job.edits],
        "batch_size": prepared.batch_size,
        "prepared_ahead": prepared.ahead,
        "compiled": out.compiled,
        "width": encoded.width,
        "height": encoded.height,
        "format": job.format,
        "encoder": encoded.encoder,
        "timings": {k: round(v, 4) for k, v in timings.items()},
        **({"faces": prepared.faces} if prepared.faces else {}),
    }
