"""One job lifecycle for every job kind (service/platform/job_kinds.py), and the worker side of a kind.

`run_job` takes a job through its record in Redis:

1. a job already finished (a re-run after success: rq's abandoned-job mix-up) keeps its outcome;
2. it is marked running; a job deleted by its owner before it ran (or whose record expired) is skipped;
3. its work runs, retried in process with backoff on transient errors (storage hiccups, Redis reconnects,
   CUDA out of memory) where the kind allows it;
4. a cancel ends it as canceled; a permanent error (bad input, an unavailable style) is recorded as failed
   with its code, counted, and *not* raised, so nothing retries it; what is still failing after the retries
   is raised to rq, which re-queues the job or calls the kind's `on_failure` once no retry is left (rq's
   abandoned-job cleanup calls it too, for a job whose worker died);
5. it is marked succeeded, unless it was canceled or deleted during its last step.

What differs between kinds (which errors are permanent, their codes, the files cleaned up after each
outcome, the style record of a training job) is a `WorkerKind`, one per module of workers/kinds/.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import ConnectionError as RedisConnectionError
from torch.cuda import OutOfMemoryError as TorchOOM

from service.platform.contract import FINISHED
from service.platform.job_kinds import JobKind
from service.platform.jobmetrics import count_failure
from service.platform.objectstore import StoreUnavailable
from workers.context import JobContext, job_context

log = logging.getLogger("agilegan.worker")

TRANSIENT_BACKOFF_S = (1.0, 4.0)
# a store outage (service/platform/objectstore.py) is transient too
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, RedisConnectionError, TorchOOM, StoreUnavailable)
Outcome = Literal["succeeded", "failed", "canceled", "lost"]  # lost: canceled or deleted during its last step
Work = Callable[[JobContext, Any], dict[str, Any]]  # a kind's work: (context, payload) → the job's result


class JobCanceled(Exception):
    """The client canceled the job; raised between steps."""


@dataclass(frozen=True)
class WorkerKind:
    """The worker side of a kind (`spec`: its row of the table): what differs between kinds; the lifecycle
    they share is `run_job`.

    `permanent`: errors recorded as the job's failure, never retried; their code is the first match in
    `codes`, else the error's own `code`, else `default_code`. `canceled`: errors that end the job as
    canceled. `transient_backoff_s`: the waits of the in-process retries (none: the first transient error
    goes to rq). The hooks default to doing nothing."""

    spec: JobKind
    permanent: tuple[type[BaseException], ...]
    default_code: str
    codes: tuple[tuple[type[BaseException], str], ...] = ()
    canceled: tuple[type[BaseException], ...] = (JobCanceled,)
    transient_backoff_s: tuple[float, ...] = ()
    crash_code: str = "internal_error"  # a failure rq reports that is neither a dead worker nor a timeout

    @property
    def name(self) -> str:
        return self.spec.name

    def code_of(self, error: BaseException) -> str:
        for kind, code in self.codes:
            if isinstance(error, kind):
                return code
        return getattr(error, "code", self.default_code)

    # Hooks a kind may override.
    def skip(self, ctx: JobContext, job: Any) -> str | None:
        """Why the job is not run again (step 1): its record says it finished."""
        status = (ctx.jobs.get(job.job_id) or {}).get("status")
        return status if status in FINISHED else None

    def start(self, ctx: JobContext, job: Any) -> bool:
        """Mark it running (step 2); False when its record is gone."""
        return ctx.jobs.mark_running(job.job_id, ctx.worker_name)

    def cancel(self, ctx: JobContext, job: Any, error: BaseException) -> dict[str, Any]:
        """Step 4, canceled: the record says so."""
        ctx.jobs.mark_canceled(job.job_id)
        return {"canceled": True}

    def failed(self, ctx: JobContext, job: Any, code: str, message: str) -> None:
        """Step 4, failed: anything beside the job record (a style's record)."""

    def publish(self, ctx: JobContext, job: Any, result: dict[str, Any]) -> None:
        """Step 5, before the record says succeeded: what must be visible by then (a trained style)."""

    def cleanup(self, ctx: JobContext, job: Any, outcome: Outcome) -> None:
        """After each outcome: the work files and uploads that outcome no longer needs."""

    def crashed(self, ctx: JobContext, payload: dict[str, Any], code: str, message: str) -> None:
        """A failure rq recorded once no retry was left (`record_crash`), beside the job record."""


def run_job(kind: WorkerKind, payload: dict[str, Any], work: Work) -> dict[str, Any]:
    """Run `work(ctx, job)` for the job of `payload` (validated as the kind's payload model) through the
    shared lifecycle; the rq result."""
    ctx = job_context()
    job = kind.spec.payload.model_validate(payload)
    # 1. A finished job keeps its outcome.
    finished = kind.skip(ctx, job)
    if finished is not None:
        return {"skipped": finished}
    # 2. Running, unless deleted.
    if not kind.start(ctx, job):
        return {"skipped": "deleted"}
    # 3. The work, with in-process retries of transient errors.
    try:
        result = _with_retries(kind, ctx, job, work)
    # 4. Canceled, or failed for good.
    except kind.canceled as e:
        outcome = kind.cancel(ctx, job, e)
        kind.cleanup(ctx, job, "canceled")
        return outcome
    except kind.permanent as e:
        code = kind.code_of(e)
        kind.failed(ctx, job, code, str(e))
        ctx.jobs.mark_failed(job.job_id, code, str(e))
        count_failure(ctx.redis, code)
        log.info("%s job %s failed: %s", kind.name, job.job_id, code)
        kind.cleanup(ctx, job, "failed")
        return {"failed": code}
    # 5. Succeeded, unless canceled or deleted during the last step.
    kind.publish(ctx, job, result)
    if not ctx.jobs.mark_succeeded(job.job_id, result):
        kind.cleanup(ctx, job, "lost")
        return {"skipped": "canceled"}
    kind.cleanup(ctx, job, "succeeded")
    return result


def _with_retries(kind: WorkerKind, ctx: JobContext, job: Any, work: Work) -> dict[str, Any]:
    for attempt in range(len(kind.transient_backoff_s) + 1):
        try:
            return work(ctx, job)
        except kind.permanent + kind.canceled:
            raise
        except TRANSIENT_ERRORS as e:
            if attempt == len(kind.transient_backoff_s):
                raise  # rq records it (record_crash); a crash of the worker itself is retried by rq
            wait = kind.transient_backoff_s[attempt]
            log.warning(
                "%s job %s: transient %s (%s); retrying in %.0f s", kind.name, job.job_id, type(e).__name__, e, wait
            )
            _release_gpu_memory()
            time.sleep(wait)
    raise AssertionError("unreachable")


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def record_crash(kind: WorkerKind, job: Any, connection: Any, exc_type: Any, exc_value: Any) -> None:
    """What a kind's rq failure callback does: a job rq will retry shows as queued again (its worker died,
    or a transient error outlived the in-process retries); once no retry is left, it is failed."""
    code, message = failure_code(exc_type, exc_value, kind.crash_code)
    ctx = job_context()
    if job.retries_left:
        log.warning("%s job %s failed (%s); %d retries left", kind.name, job.id, code, job.retries_left)
        ctx.jobs.mark_requeued(job.id, message)
        return
    ctx.jobs.mark_failed(job.id, code, message)
    kind.crashed(ctx, job.args[0] if job.args else {}, code, message)
    count_failure(connection, code)


def failure_code(exc_type: Any, exc_value: Any, default: str) -> tuple[str, str]:
    """(code, message) for a job failure that rq reports: a dead worker, a timeout, or `default`."""
    name = getattr(exc_type, "__name__", str(exc_type))
    code = "worker_lost" if name == "AbandonedJobError" else "timeout" if "Timeout" in name else default
    return code, f"{name}: {exc_value}"[:300]
