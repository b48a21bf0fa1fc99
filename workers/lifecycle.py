"""One job lifecycle for every job kind (stylize, animate, fit-direction, train-style).

`run_job` takes a job through its record in Redis:

1. a job already finished (a re-run after success: rq's abandoned-job mix-up) keeps its outcome;
2. it is marked running; a job deleted by its owner before it ran (or whose record expired) is skipped;
3. its work runs, retried in process with backoff on transient errors (storage hiccups, Redis reconnects,
   CUDA out of memory) where the kind allows it;
4. a cancel ends it as canceled; a permanent error (bad input, an unavailable style) is recorded as failed
   with its code, counted, and *not* raised, so nothing retries it; what is still failing after the retries
   is raised to rq, which re-queues the job or calls `on_job_failure` once no retry is left (rq's
   abandoned-job cleanup calls it too, for a job whose worker died);
5. it is marked succeeded, unless it was canceled or deleted during its last step.

What differs between kinds (which errors are permanent, their codes, the files cleaned up after each
outcome, the style record of a training job) is a `JobKind`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import ConnectionError as RedisConnectionError
from torch.cuda import OutOfMemoryError as TorchOOM

from service.core.contract import FINISHED
from service.core.jobmetrics import count_failure
from service.core.objectstore import StoreUnavailable
from workers.runtime import Runtime, get_runtime

log = logging.getLogger("agilegan.worker")

TRANSIENT_BACKOFF_S = (1.0, 4.0)
# a store outage (service/core/objectstore.py) is transient too
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, RedisConnectionError, TorchOOM, StoreUnavailable)
Outcome = Literal["succeeded", "failed", "canceled", "lost"]  # lost: canceled or deleted during its last step


class JobCanceled(Exception):
    """The client canceled the job; raised between steps."""


@dataclass(frozen=True)
class JobKind:
    """What differs between job kinds; the lifecycle they share is `run_job`.

    `permanent`: errors recorded as the job's failure, never retried; their code is the first match in
    `codes`, else the error's own `code`, else `default_code`. `canceled`: errors that end the job as
    canceled. `transient_backoff_s`: the waits of the in-process retries (none: the first transient error
    goes to rq). The hooks default to doing nothing."""

    name: str
    permanent: tuple[type[BaseException], ...]
    default_code: str
    codes: tuple[tuple[type[BaseException], str], ...] = ()
    canceled: tuple[type[BaseException], ...] = (JobCanceled,)
    transient_backoff_s: tuple[float, ...] = ()
    crash_code: str = "internal_error"  # a failure rq reports that is neither a dead worker nor a timeout

    def code_of(self, error: BaseException) -> str:
        for kind, code in self.codes:
            if isinstance(error, kind):
                return code
        return getattr(error, "code", self.default_code)

    # Hooks a kind may override.
    def skip(self, rt: Runtime, job: Any) -> str | None:
        """Why the job is not run again (step 1): its record says it finished."""
        status = (rt.jobs.get(job.job_id) or {}).get("status")
        return status if status in FINISHED else None

    def start(self, rt: Runtime, job: Any) -> bool:
        """Mark it running (step 2); False when its record is gone."""
        return rt.jobs.mark_running(job.job_id, rt.worker_name)

    def cancel(self, rt: Runtime, job: Any, error: BaseException) -> dict[str, Any]:
        """Step 4, canceled: the record says so."""
        rt.jobs.mark_canceled(job.job_id)
        return {"canceled": True}

    def failed(self, rt: Runtime, job: Any, code: str, message: str) -> None:
        """Step 4, failed: anything beside the job record (a style's record)."""

    def publish(self, rt: Runtime, job: Any, result: dict[str, Any]) -> None:
        """Step 5, before the record says succeeded: what must be visible by then (a trained style)."""

    def cleanup(self, rt: Runtime, job: Any, outcome: Outcome) -> None:
        """After each outcome: the work files and uploads that outcome no longer needs."""

    def crashed(self, rt: Runtime, payload: dict[str, Any], code: str, message: str) -> None:
        """A failure rq recorded once no retry was left (`on_job_failure`), beside the job record."""


def run_job(kind: JobKind, job: Any, work: Callable[[Runtime], dict[str, Any]]) -> dict[str, Any]:
    """Run `work` for `job` (a payload with `job_id`) through the shared lifecycle; the rq result."""
    rt = get_runtime()
    # 1. A finished job keeps its outcome.
    finished = kind.skip(rt, job)
    if finished is not None:
        return {"skipped": finished}
    # 2. Running, unless deleted.
    if not kind.start(rt, job):
        return {"skipped": "deleted"}
    # 3. The work, with in-process retries of transient errors.
    try:
        result = _with_retries(kind, job, work, rt)
    # 4. Canceled, or failed for good.
    except kind.canceled as e:
        outcome = kind.cancel(rt, job, e)
        kind.cleanup(rt, job, "canceled")
        return outcome
    except kind.permanent as e:
        code = kind.code_of(e)
        kind.failed(rt, job, code, str(e))
        rt.jobs.mark_failed(job.job_id, code, str(e))
        count_failure(rt.redis, code)
        kind.cleanup(rt, job, "failed")
        return {"failed": code}
    # 5. Succeeded, unless canceled or deleted during the last step.
    kind.publish(rt, job, result)
    if not rt.jobs.mark_succeeded(job.job_id, result):
        kind.cleanup(rt, job, "lost")
        return {"skipped": "canceled"}
    kind.cleanup(rt, job, "succeeded")
    return result


def _with_retries(kind: JobKind, job: Any, work: Callable[[Runtime], dict[str, Any]], rt: Runtime) -> dict[str, Any]:
    for attempt in range(len(kind.transient_backoff_s) + 1):
        try:
            return work(rt)
        except kind.permanent + kind.canceled:
            raise
        except TRANSIENT_ERRORS as e:
            if attempt == len(kind.transient_backoff_s):
                raise  # rq records it (on_job_failure); a crash of the worker itself is retried by rq
            wait = kind.transient_backoff_s[attempt]
            log.warning("job %s: transient %s (%s); retrying in %.0f s", job.job_id, type(e).__name__, e, wait)
            _release_gpu_memory()
            time.sleep(wait)
    raise AssertionError("unreachable")


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def record_crash(kind: JobKind, job: Any, connection: Any, exc_type: Any, exc_value: Any) -> None:
    """What an rq failure callback does for `kind`: a job rq will retry shows as queued again (its worker
    died, or a transient error outlived the in-process retries); once no retry is left, it is failed."""
    code, message = failure_code(exc_type, exc_value, kind.crash_code)
    rt = get_runtime()
    if job.retries_left:
        log.warning("job %s failed (%s); %d retries left", job.id, code, job.retries_left)
        rt.jobs.mark_requeued(job.id, message)
        return
    rt.jobs.mark_failed(job.id, code, message)
    kind.crashed(rt, job.args[0] if job.args else {}, code, message)
    count_failure(connection, code)


def on_job_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """rq failure callback of the stylize, animate and fit-direction jobs (`JOB_FAILURE_CALLBACK`)."""
    record_crash(PLAIN_JOB, job, connection, exc_type, exc_value)


def failure_code(exc_type: Any, exc_value: Any, default: str) -> tuple[str, str]:
    """(code, message) for a job failure that rq reports: a dead worker, a timeout, or `default`."""
    name = getattr(exc_type, "__name__", str(exc_type))
    code = "worker_lost" if name == "AbandonedJobError" else "timeout" if "Timeout" in name else default
    return code, f"{name}: {exc_value}"[:300]


PLAIN_JOB = JobKind("job", permanent=(), default_code="internal_error")  # a crash with nothing beside its record
