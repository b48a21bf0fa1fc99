"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from rq import Worker

from service.contract import QUEUES, metrics_key

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no dependency checked; async, so it needs no worker thread to answer)."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when Redis answers and at least one live worker listens on each queue."""
    redis = request.app.state.redis
    checks: dict[str, object] = {}
    try:
        redis.ping()
        checks["redis"] = "ok"
        workers = Worker.all(connection=redis)
        for name in QUEUES:
            checks[f"workers_{name}"] = sum(1 for w in workers if name in w.queue_names())
    except Exception as e:  # noqa: BLE001 - any Redis failure means not ready
        checks["redis"] = f"error: {type(e).__name__}"
    ready = checks.get("redis") == "ok" and all(checks.get(f"workers_{q}", 0) for q in QUEUES)
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format: requests, queue depth, job latency by stage, failures."""
    redis = request.app.state.redis
    lines = [
        "# HELP agilegan_http_requests_total HTTP requests by method, route and status.",
        "# TYPE agilegan_http_requests_total counter",
    ]
    for field, count in sorted(redis.hgetall(metrics_key("requests")).items()):
        method, path, status = field.decode().split("|")
        lines.append(f'agilegan_http_requests_total{{method="{method}",route="{path}",status="{status}"}} {int(count)}')
    lines += ["# HELP agilegan_queue_depth Jobs waiting per queue.", "# TYPE agilegan_queue_depth gauge"]
    for name, queue in request.app.state.queues.items():
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
