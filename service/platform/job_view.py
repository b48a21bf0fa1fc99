"""The public view of a job record: what `GET /v1/jobs/{id}` answers and what a webhook delivers (the API
validates it as `service.api.schemas.JobStatus`; the webhook senders send it as it is)."""

from __future__ import annotations

from typing import Any

from redis import Redis

from service.platform.contract import JobState
from service.platform.webhooks import deliveries


def public_job(
    job_id: str,
    record: dict[str, Any],
    redis: Redis | None = None,
    position: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """`record` as `JobStore.get` reads it, for its owner; `redis` reads its webhook deliveries (if any)."""
    error = None
    if record.get("error_code"):
        error = {"code": record["error_code"], "message": record.get("error_message", ""), "request_id": request_id}
    webhook = None
    if record.get("webhook_url"):
        webhook = {
            "url": record["webhook_url"],
            "events": record.get("webhook_events", "").split(","),
            "deliveries": deliveries(redis, job_id) if redis is not None else [],
        }
    return {
        "id": job_id,
        "kind": record.get("kind", "stylize"),
        "status": record.get("status", JobState.QUEUED),
        "attempts": record.get("attempts", 0),
        "position": position,
        "stage": record.get("stage"),
        "progress": record.get("progress", 0.0),
        "detail": record.get("detail"),
        "created_at": record.get("created_at", 0.0),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "options": record.get("options", {}),
        "result": record.get("result"),
        "error": error,
        "webhook": webhook,
        "links": {"self": f"/v1/jobs/{job_id}", "result": f"/v1/jobs/{job_id}/result"},
    }
