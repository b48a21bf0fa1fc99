"""ASGI middleware: request ids, security headers, the upload size cap (counted while streaming), request
metrics."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from service.platform.auth import bearer_key, refusal_message
from service.platform.redis_keys import metrics_key

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
BREAKER_OPEN_S = 5.0


class RedisBreaker:
    """Best-effort Redis calls of the middleware (metrics, failed-auth counts), made on the event loop:
    after one fails, the next `BREAKER_OPEN_S` seconds skip Redis, so an outage (where each call could
    wait out a connect timeout) never slows requests that do not need Redis, /healthz above all."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.closed_at = 0.0

    def call(self, fn: Callable[[Redis], Any]) -> Any | None:
        if time.monotonic() < self.closed_at:
            return None
        try:
            return fn(self.redis)
        except (RedisError, OSError):
            self.closed_at = time.monotonic() + BREAKER_OPEN_S
            return None


class RequestContext:
    """Gives each request an id (the client's X-Request-ID when sane) and echoes it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


CONSOLE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


class SecurityHeaders:
    """Headers every answer carries: no MIME sniffing, no framing (the console's buttons cannot be
    clickjacked), no referrer, and a Content-Security-Policy: the console's own files only for
    /console, nothing at all for API answers. A route that sets its own policy keeps it (/docs: its
    inline start-up script by hash, service/api/docs.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = (CONSOLE_CSP if scope["path"].startswith("/console") else API_CSP).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                for name, value in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", policy),
                ):
                    if name not in present:
                        headers.append((name, value))
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, counting bytes as they stream in; never buffers.

    A Content-Length over the limit is refused before reading. Otherwise the body streams through to
    the app (Starlette spools multipart files over 1 MB to disk); the moment the count passes the
    limit, the app is told the client went away, whatever it answers is dropped, and the client gets
    the 413 (FastAPI and Starlette cap nothing by themselves).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self.per_path.get(scope["path"].rstrip("/"), self.max_bytes)
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._refuse(scope, send, limit)
        size = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal size, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(scope, send, limit)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        request_id = scope.get("state", {}).get("request_id")
        body = json.dumps(
            {
                "code": "payload_too_large",
                "message": f"request body is larger than {limit} bytes",
                "request_id": request_id,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class AuthGate:
    """Authenticates every /v1/ request from its headers before any body byte is read.

    An unauthenticated client can then make the API parse or store nothing, however large its body
    (it used to be parsed, and buffered in memory, before the key was checked). Failed
    authentications are counted per source address in Redis: past `failed_per_minute` in a minute the
    address gets 429 with Retry-After (Redis being down only turns that counting off). Which role an
    endpoint needs stays with the endpoint (`service.api.deps`).
    """

    def __init__(self, app: ASGIApp, keys: Any, redis: Redis, failed_per_minute: int, disabled: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.redis = RedisBreaker(redis)
        self.failed_per_minute = failed_per_minute
        self.disabled = disabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.disabled or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        key = bearer_key(header)
        principal = self.keys.authenticate(key) if key else None
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
            return await self.app(scope, receive, send)
        address = (scope.get("client") or ("unknown", 0))[0]
        retry = self._count_failure(address)
        if retry is not None:
            return await _json(
                scope,
                send,
                429,
                "rate_limited",
                "too many failed authentications from this address",
                [(b"retry-after", str(retry).encode())],
            )
        await _json(scope, send, 401, "unauthorized", refusal_message(header), [(b"www-authenticate", b"Bearer")])

    def _count_failure(self, address: str) -> int | None:
        """Record a failed authentication; seconds to wait when the address is over its budget."""
        if self.failed_per_minute <= 0:
            return None
        window = int(time.time() // 60)
        key = metrics_key(f"authfail:{address}:{window}")
        counted = self.redis.call(lambda r: r.pipeline().incr(key).expire(key, 120).execute())
        if counted is None:
            return None  # Redis is down: counting is off, the 401 still stands
        if int(counted[0]) > self.failed_per_minute:
            return max(1, 60 - int(time.time()) % 60)
        return None


async def _json(scope: Scope, send: Send, status: int, code: str, message: str, headers: list) -> None:
    """A JSON error answered by middleware (no body read; the connection closes)."""
    body = json.dumps({"code": code, "message": message, "request_id": scope.get("state", {}).get("request_id")})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


class RequestMetrics:
    """Counts requests by route template, method and status in Redis (shared by all API processes)."""

    def __init__(self, app: ASGIApp, redis: Redis) -> None:
        self.app = app
        self.redis = RedisBreaker(redis)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            field = f"{scope['method']}|{path}|{status}"
            self.redis.call(lambda r: r.hincrby(metrics_key("requests"), field, 1))  # never breaks a request
