"""The public view of a job record (`JobStatus`), and the 202 answer of a route that queued one."""

from __future__ import annotations

import time

from fastapi import Request
from fastapi.responses import JSONResponse
from rq.exceptions import NoSuchJobError
from rq.job import Job

from service.api.schemas import JobStatus
from service.core.contract import JobState
from service.core.job_view import public_job
from service.core.webhooks import WebhookSpec


def accepted(request: Request, job_id: str, record: dict | None = None) -> JSONResponse:
    """The 202 of a route that queued a job: its status, a Location and a Retry-After."""
    if record is None:
        record = request.app.state.jobs.get(job_id) or {}
    body = job_status(request, job_id, record, lookup_position=False)  # the 202 costs no queue walk
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.links.self, "Retry-After": "1"})


def job_status(request: Request, job_id: str, record: dict, lookup_position: bool = True) -> JobStatus:
    """The public view of a job record (with its queue position while queued, when looked up)."""
    redis = request.app.state.redis
    position = None
    if lookup_position and record.get("status") == JobState.QUEUED:
        try:
            position = Job.fetch(job_id, connection=redis).get_position()
        except NoSuchJobError:
            position = None
    return JobStatus(**public_job(job_id, record, redis, position, request.state.request_id))


def queued_record(kind: str, options: dict, callback: WebhookSpec | None = None) -> dict:
    """The record of a job just queued, as `JobStore.create` wrote it (the 202 costs no Redis read)."""
    record = {"status": JobState.QUEUED, "kind": kind, "created_at": time.time(), "options": options}
    if callback is not None:
        record.update(webhook_url=callback.url, webhook_events=",".join(callback.events))
    return record
