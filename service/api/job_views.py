"""The public view of a job record (`JobStatus`), and the 202 answer of a route that queued one."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from rq.exceptions import NoSuchJobError
from rq.job import Job

from service.api.schemas import ErrorBody, JobStatus
from service.core.contract import JobState


def accepted(request: Request, job_id: str, record: dict | None = None) -> JSONResponse:
    """The 202 of a route that queued a job: its status, a Location and a Retry-After."""
    if record is None:
        record = request.app.state.jobs.get(job_id) or {}
    body = job_status(request, job_id, record, lookup_position=False)  # the 202 costs no queue walk
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.links.self, "Retry-After": "1"})


def job_status(request: Request, job_id: str, record: dict, lookup_position: bool = True) -> JobStatus:
    """The public view of a job record (with its queue position while queued, when looked up)."""
    position = None
    if lookup_position and record.get("status") == JobState.QUEUED:
        try:
            position = Job.fetch(job_id, connection=request.app.state.redis).get_position()
        except NoSuchJobError:
            position = None
    error = None
    if record.get("error_code"):
        error = ErrorBody(
            code=record["error_code"], message=record.get("error_message", ""), request_id=request.state.request_id
        )
    return JobStatus(
        id=job_id,
        kind=record.get("kind", "stylize"),
        status=record.get("status", JobState.QUEUED),
        attempts=record.get("attempts", 0),
        position=position,
        stage=record.get("stage"),
        progress=record.get("progress", 0.0),
        detail=record.get("detail"),
        created_at=record.get("created_at", 0.0),
        started_at=record.get("started_at"),
        finished_at=record.get("finished_at"),
        options=record.get("options", {}),
        result=record.get("result"),
        error=error,
        links={"self": f"/v1/jobs/{job_id}", "result": f"/v1/jobs/{job_id}/result"},
    )
