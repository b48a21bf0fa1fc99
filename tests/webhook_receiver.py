"""A real HTTP receiver on 127.0.0.1 for the webhook tests: it records every request and answers each path
from a plan (a status, a slow answer, or a redirect), the last step repeating."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Step:
    status: int = 200
    sleep_s: float = 0.0  # before answering
    location: str | None = None  # a redirect's target


@dataclass
class Receiver:
    plans: dict[str, list[Step]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Received(self.path, dict(self.headers), body, time.time()))
                plan = receiver.plans.get(self.path) or [Step()]
                step = plan.pop(0) if len(plan) > 1 else plan[0]
                time.sleep(step.sleep_s)
                try:
                    self.send_response(step.status)
                    if step.location:
                        self.send_header("Location", step.location)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def wait(self, path: str, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.time() + timeout
        while len(self.at(path)) < count:
            if time.time() > deadline:
                raise TimeoutError(f"{len(self.at(path))} of {count} requests at {path}")
            time.sleep(0.02)
        return self.at(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
