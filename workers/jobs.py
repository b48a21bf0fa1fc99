"""The stylize job (stylize queue), called by dotted path (`service.core.contract.STYLIZE_FUNCTION`).

It reads its small payload and does its numbered steps on the process's warm runtime; the lifecycle around
them (skip a finished job, running, retries, failed, canceled, succeeded) is `workers.lifecycle.run_job`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from models.inference.directions import DirectionError
from models.inference.pipeline import IncompatibleModels
from service.core.contract import StylizeJob
from service.core.errors import InputError
from service.core.jobmetrics import observe
from service.core.storage import InputMissing
from workers.lifecycle import TRANSIENT_BACKOFF_S, JobCanceled, JobKind, Outcome, on_job_failure, run_job
from workers.runtime import Runtime, StyleUnavailable, get_runtime
from workers.stylize_pipeline import Encoded, Prepared, prepare

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
    # 1-3. The style, the crop and the networks: made in a batch with other jobs (workers/batching.py), or
    # now as a batch of one; the job's own failure (its code) is raised here.
    prepared = rt.prepared.pop(job.job_id, None) or prepare(rt, [job])[job.job_id]
    if isinstance(prepared, BaseException):
        raise prepared
    timings.update(prepared.timings)
    # 4. The result, post-processed and encoded in the CPU pool.
    encoded = prepared.encoded.result()
    timings["postprocess"] = encoded.seconds
    _step(rt, job, "postprocess", 0.9)
    # 5. Store it atomically.
    started = time.perf_counter()
    rt.storage.write_result(job.job_id, job.format, encoded.data)
    timings["store"] = time.perf_counter() - started
    _step(rt, job, "store", 1.0)
    return _result(job, prepared, encoded, timings)


def _step(rt: Runtime, job: StylizeJob, stage: str, fraction: float) -> None:
    """A stage reached: its progress, and the cancel check, in one round trip."""
    if rt.jobs.advance([job.job_id], stage, fraction)[job.job_id] == "canceled":
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
