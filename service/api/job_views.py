"""The public view of a job record (`JobStatus`), and the 202 answer of a route that queued one."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from service.api.schemas import JobStatus
from service.platform.contract import JobState
from service.platform.job_view import public_job
from service.platform.jobstore import JobStore
from service.platform.webhooks import WebhookSpec


@dataclass(frozen=True)
class JobViews:
    """Job records as one request answers them (its `request_id` in each view)."""

    redis: Redis
    jobs: JobStore
    request_id: str

    def accepted(self, job_id: str, record: dict | None = None) -> JSONResponse:
        """The 202 of a route that queued a job: its status, a Location and a Retry-After."""
        if record is None:
            record = self.jobs.get(job_id) or {}
        body = self.status(job_id, record, lookup_position=False)  # the 202 costs no queue walk
        headers = {"Location": body.links.self, "Retry-After": "1"}
        return JSONResponse(body.model_dump(), status_code=202, headers=headers)

    def status(self, job_id: str, record: dict, lookup_position: bool = True) -> JobStatus:
        """The public view of a job record (with its queue position while queued, when looked up)."""
        position = None
        if lookup_position and record.get("status") == JobState.QUEUED:
            try:
                position = Job.fetch(job_id, connection=self.redis).get_position()
            except NoSuchJobError:
                position = None
        return JobStatus(**public_job(job_id, record, self.redis, position, self.request_id))


def queued_record(kind: str, options: dict, callback: WebhookSpec | None = None) -> dict:
    """The record of a job just queued, as `JobStore.create` wrote it (the 202 costs no Redis read)."""
    record = {"status": JobState.QUEUED, "kind": kind, "created_at": time.time(), "options": options}
    if callback is not None:
        record.update(webhook_url=callback.url, webhook_events=",".join(callback.events))
    return record
