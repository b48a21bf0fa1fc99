"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from redis.exceptions import RedisError
from rq import Worker

from service.api.deps import JobQueuesDep, RedisDep, SettingsDep
from service.api.schemas import ErrorBody, QueueReadiness, Readiness
from service.platform.contract import QUEUES
from service.platform.redis_keys import metrics_key

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no dependency checked; async, so it needs no worker thread to answer)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {"model": Readiness, "description": "not ready: the body says why"},
        422: {"model": ErrorBody, "description": "unknown queue names"},
    },
)
def readyz(
    settings: SettingsDep,
    redis: RedisDep,
    job_queues: JobQueuesDep,
    queues: Annotated[
        str | None,
        Query(
            pattern=rf"^({'|'.join(QUEUES)})(,({'|'.join(QUEUES)}))*$",
            description="comma-separated queues that need a live worker (default: AGILEGAN_READY_QUEUES, "
            "'stylize'); a training-only deployment asks for 'train', a video one for 'video'",
        ),
    ] = None,
) -> JSONResponse:
    """Ready when Redis answers and a live worker listens on each required queue. Readiness is per role:
    a stylize-only deployment is ready without a train worker. The body reports every queue's workers
    and depth, and why it is not ready."""
    required = [q.strip() for q in (queues or settings.ready_queues).split(",") if q.strip()]
    body = Readiness(ready=False, redis="ok")
    try:
        redis.ping()
        workers = Worker.all(connection=redis)
        for name, queue in job_queues.queues.items():
            body.queues[name] = QueueReadiness(
                workers=sum(1 for w in workers if name in w.queue_names()), depth=queue.count, required=name in required
            )
    except (RedisError, OSError) as e:
        body.redis = f"unavailable: {type(e).__name__}"
        body.reasons.append(f"Redis does not answer ({type(e).__name__}): no job can be accepted or looked up")
    body.reasons += [
        f"no live worker on the {q!r} queue" for q in required if q in body.queues and not body.queues[q].workers
    ]
    body.ready = not body.reasons
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={503: {"model": ErrorBody, "description": "the job store (Redis) is unavailable"}},
)
def metrics(redis: RedisDep, job_queues: JobQueuesDep) -> PlainTextResponse:
    """Prometheus text format: requests, queue depth, job latency by stage, failures."""
    lines = [
        "# HELP agilegan_http_requests_total HTTP requests by method, route and status.",
        "# TYPE agilegan_http_requests_total counter",
    ]
    for field, count in sorted(redis.hgetall(metrics_key("requests")).items()):
        method, path, status = field.decode().split("|")
        lines.append(f'agilegan_http_requests_total{{method="{method}",route="{path}",status="{status}"}} {int(count)}')
    lines += ["# HELP agilegan_queue_depth Jobs waiting per queue.", "# TYPE agilegan_queue_depth gauge"]
    for name, queue in job_queues.queues.items():
        lines.append(f'agilegan_queue_depth{{queue="{name}"}} {queue.count}')
    lines += [
        "# HELP agilegan_job_stage_seconds Time spent per job stage.",
        "# TYPE agilegan_job_stage_seconds histogram",
    ]
    stages = redis.hgetall(metrics_key("stage_seconds"))
    for field, value in sorted(stages.items(), key=lambda kv: _bucket_order(kv[0].decode())):
        stage, kind, le = (field.decode().split("|") + [""])[:3]
        if kind == "bucket":
            lines.append(f'agilegan_job_stage_seconds_bucket{{stage="{stage}",le="{le}"}} {int(value)}')
        else:
            lines.append(f'agilegan_job_stage_seconds_{kind}{{stage="{stage}"}} {float(value)}')
    lines += [
        "# HELP agilegan_job_failures_total Failed jobs by error code.",
        "# TYPE agilegan_job_failures_total counter",
    ]
    for field, count in sorted(redis.hgetall(metrics_key("failures")).items()):
        lines.append(f'agilegan_job_failures_total{{code="{field.decode()}"}} {int(count)}')
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def _bucket_order(field: str) -> tuple:
    stage, kind, le = (field.split("|") + [""])[:3]
    bound = float("inf") if le == "+Inf" else float(le or 0)
    return (stage, kind != "bucket", bound, kind)
