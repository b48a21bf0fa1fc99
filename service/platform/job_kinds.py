"""Every job kind, declared once: the table the API, the workers, the orphan pass and the docs read.

A kind is its name (in job records, logs, metrics and docs), its rq queue, the dotted paths of its job
function and failure callback (the API enqueues by path: it never imports worker code), its payload model,
its timeout and retries, and whether the queue cap applies. Its worker side is one module,
`workers/kinds/<name>.py`, with `run(payload)` and `on_failure(...)`. Adding a kind is a row here and that
module; `service.platform.queueing.JobQueues.submit` queues any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from service.platform.contract import (
    QUEUES,
    STYLIZE_QUEUE,
    TRAIN_QUEUE,
    VIDEO_QUEUE,
    AnimateJob,
    FitDirectionJob,
    StylizeJob,
    TrainJob,
)

if TYPE_CHECKING:
    from service.platform.settings import Settings


@dataclass(frozen=True)
class JobKind:
    """One row of the table. `timeout_s` and `retries` are read from the settings and the payload at submit:
    rq kills a job past its timeout, and re-runs a job whose worker died (or whose transient error outlived
    the in-process retries) up to `retries` times. `capped`: refused with 503 while the kind's queue holds
    `max_queue_depth` jobs."""

    name: str
    queue: str
    payload: type[BaseModel]  # the job's pydantic payload, with its `job_id`
    timeout_s: Callable[[Settings, Any], int]
    retries: Callable[[Settings], int]
    capped: bool
    summary: str  # what the kind does, for the docs

    @property
    def module(self) -> str:
        """The worker module of the kind."""
        return f"workers.kinds.{self.name}"

    @property
    def function(self) -> str:
        """The dotted path of its job function (rq imports it in the worker)."""
        return f"{self.module}.run"

    @property
    def on_failure(self) -> str:
        """The dotted path of its rq failure callback (once no retry is left, or its worker died)."""
        return f"{self.module}.on_failure"


VIDEO_TIMEOUT_S = 6 * 3600
FIT_DIRECTION_TIMEOUT_S = 3600
FIT_DIRECTION_RETRIES = 3
TRAIN_RETRIES = 10  # each worker crash or redeploy (SIGTERM: checkpoint, re-queue) uses one


def _job_timeout(settings: Settings, payload: Any) -> int:
    return settings.job_timeout_s


def _job_retries(settings: Settings) -> int:
    return settings.job_retries


def _training_timeout(settings: Settings, payload: TrainJob) -> int:
    """Above the run's time budget (`minutes` of its overrides): its evaluations and the publish fit in."""
    minutes = float(payload.overrides.get("minutes", settings.train_minutes))
    return int(minutes * 60 * 1.5 + 900)


STYLIZE = JobKind(
    "stylize",
    STYLIZE_QUEUE,
    StylizeJob,
    timeout_s=_job_timeout,
    retries=_job_retries,
    capped=True,
    summary="a portrait through the encoder and a style's generator (POST /v1/stylize)",
)
ANIMATE = JobKind(
    "animate",
    VIDEO_QUEUE,
    AnimateJob,
    timeout_s=lambda settings, payload: VIDEO_TIMEOUT_S,
    retries=_job_retries,
    capped=True,
    summary="every frame of a video stylized, or a portrait driven by a video's motion (POST /v1/animate)",
)
FIT_DIRECTION = JobKind(
    "fit_direction",
    TRAIN_QUEUE,
    FitDirectionJob,
    timeout_s=lambda settings, payload: FIT_DIRECTION_TIMEOUT_S,
    retries=lambda settings: FIT_DIRECTION_RETRIES,
    capped=False,
    summary="a latent direction fitted from two labelled photo sets (POST /v1/directions)",
)
TRAIN = JobKind(
    "train",
    TRAIN_QUEUE,
    TrainJob,
    timeout_s=_training_timeout,
    retries=lambda settings: TRAIN_RETRIES,
    capped=False,
    summary="a style's generator trained from exemplars, with early stopping (POST /v1/styles)",
)

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (STYLIZE, ANIMATE, FIT_DIRECTION, TRAIN)}
assert all(kind.queue in QUEUES for kind in KINDS.values())

# The job functions of jobs queued before this table (rq stores the path in the job): a worker runs them
# as the kind they were (workers/worker.py).
LEGACY_FUNCTIONS: dict[str, str] = {
    "workers.jobs.stylize_job": "stylize",
    "workers.video_job.animate_job": "animate",
    "workers.direction_job.fit_direction_job": "fit_direction",
    "workers.training_job.train_style_job": "train",
}


def kind_of_function(path: str) -> JobKind | None:
    """The kind whose job function `path` is (today's path, or one of `LEGACY_FUNCTIONS`); None: not ours."""
    for kind in KINDS.values():
        if kind.function == path:
            return kind
    legacy = LEGACY_FUNCTIONS.get(path)
    return KINDS[legacy] if legacy else None
