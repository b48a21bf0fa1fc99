"""Every error is JSON: {"code", "message", "request_id"} with a fitting HTTP status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.platform.objectstore import StoreUnavailable
from service.platform.queueing import QueueFull
from service.portrait.errors import InputError

log = logging.getLogger("agilegan.api")

# Status for each input-error code of the aligner and image decoder.
INPUT_ERROR_STATUS = {
    "unsupported_format": 415,
    "invalid_image": 422,
    "image_too_large": 413,
    "no_face": 422,
    "face_too_small": 422,
    "face_index_out_of_range": 422,
    "too_many_faces": 422,
    "unsupported_video": 415,
    "invalid_video": 422,
    "video_too_long": 413,
    "too_many_frames": 413,
    "frame_too_large": 413,
    "invalid_archive": 422,
    "too_many_files": 413,
    "payload_too_large": 413,
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_format",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse(
        {"code": code, "message": message, "request_id": request_id}, status_code=status, headers=headers
    )


METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    """Every method some route of this path answers, asked of the router itself (included routers
    too), so the 405's Allow header is what the routes really accept."""
    return [
        method
        for method in METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return error_response(request, INPUT_ERROR_STATUS.get(exc.code, 422), exc.code, exc.message)

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(
            request, 503, "queue_full", "too many jobs are waiting; retry later", {"Retry-After": "10"}
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{where}: {err.get('msg')}")
        return error_response(request, 422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the first route of the path; the path may have several (GET, DELETE).
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return error_response(request, exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(RedisError)
    async def _redis_down(request: Request, exc: RedisError) -> JSONResponse:
        # Job state lives in Redis: without it nothing can be accepted or looked up, but nothing
        # already accepted is lost either. The client retries; redis-py reconnects by itself.
        log.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            request, 503, "unavailable", "the job store (Redis) is unavailable; retry shortly", {"Retry-After": "5"}
        )

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("object store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            request, 503, "unavailable", "the object store is unavailable; retry shortly", {"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal error; the request id is in the logs")
