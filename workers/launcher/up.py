"""`agilegan up` (what `make run` runs): the whole service on this machine, supervised, and a ready line.

Redis (when none answers), the first-run style or the offline demo, a worker per queue and the API run
as children of a `Supervisor` (workers/launcher/supervisor.py). The "ready" line, with the URL, the console and a
first job to try, is printed once `/readyz` answers, not when the processes were merely started.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request

from service.platform.settings import Settings
from workers.launcher.first_run import first_run_style
from workers.launcher.redis_server import redis_answers, redis_argv, wait_for_redis

UP_WORKER_NICE = 10
UP_QUEUES = ("stylize", "train", "video")  # one worker each: an hour of training never holds up a portrait


def run_up() -> None:
    """Everything on this machine, supervised (workers/launcher/supervisor.py): Redis (when none answers), the demo
    registry (when empty), a worker per queue and the API. A child that dies is restarted with backoff;
    `up` stops, and stops every child, only on SIGINT/SIGTERM."""
    from service.platform.auth import ensure_operator_key
    from service.platform.registry import Registry
    from workers.launcher.demo import demo_registry
    from workers.launcher.supervisor import ChildSpec, Supervisor

    settings = Settings()
    stop = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor([], log=lambda line: print(f"up: {line}", flush=True))
    try:
        # 1. Redis first: the first-run install and the operator key need it.
        if not redis_answers(settings.redis_url):
            directory = settings.data_dir / "redis"
            print(f"starting redis-server for {settings.redis_url} (data in {directory})", flush=True)
            supervisor.add(ChildSpec("redis", tuple(redis_argv(settings.redis_url, directory)), tier=0))
            supervisor.start()
            wait_for_redis(settings.redis_url)
        # 2. The weights: the first-run public style when reachable, else the offline demo.
        registry = Registry(settings.registry_dir)
        style = first_run_style(settings, registry)
        if not registry.has_base() and not registry.styles():
            demo_registry(settings.registry_dir)
            print(f"created the random-weight demo style 'demo' in {settings.registry_dir}", flush=True)
        key = ensure_operator_key(settings)
        # 3. A worker per queue (niced: the API answers uploads first, README "Service"), then the API.
        cli = (sys.executable, "-m", "workers.launcher.cli")
        nice = os.environ.get("AGILEGAN_WORKER_NICE", str(UP_WORKER_NICE))
        worker_env = {**os.environ, "AGILEGAN_WORKER_NICE": nice}
        for queue in UP_QUEUES:
            supervisor.add(ChildSpec(f"{queue} worker", (*cli, "worker", "--queues", queue), 1, worker_env))
        supervisor.add(ChildSpec("api", (*cli, "serve"), 2))
        supervisor.start()
        base = f"http://{settings.host}:{settings.port}"
        print(f"starting: API on {base} once its workers are up (a minute on the first run)", flush=True)
        # 4. Supervise; the ready line once /readyz answers.
        supervisor.run(lambda: stop["signal"] is not None, ReadyLine(base, _ready_text(base, key, style, settings)))
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ready_text(base: str, key: str | None, style: str, settings) -> str:
    """What `up` prints once the service answers: where it is, the key, and a first job to try."""
    token = key or "$AGILEGAN_KEY"
    lines = [
        "",
        f"ready: API on {base}  (docs {base}/docs, console {base}/console)",
    ]
    if key:
        lines.append(f"operator API key (kept in {settings.data_dir / 'operator.key'}): {key}")
    lines += [
        "try:",
        f'  curl -s -H "Authorization: Bearer {token}" -F image=@tests/data/faces/obama.jpg -F style={style} '
        f"{base}/v1/stylize",
        f'  curl -s -H "Authorization: Bearer {token}" --create-dirs -o out/stylized.png '
        f'"{base}/v1/jobs/<id>/result?wait=60"',
        "",
    ]
    return "\n".join(lines)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # our own API: never through a proxy


class ReadyLine:
    """Prints `text` once, the first time `/readyz` answers 200 (polled at most every `every_s`)."""

    def __init__(self, base: str, text: str, every_s: float = 0.5, out=None) -> None:
        self.url, self.text, self.every_s, self.out = f"{base}/readyz", text, every_s, out
        self.printed = False
        self._next = 0.0

    def __call__(self) -> None:
        if self.printed or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_s
        try:
            with _DIRECT.open(self.url, timeout=2) as response:
                ready = response.status == 200
        except (OSError, ValueError):  # refused, 503 (HTTPError is an OSError), timed out
            return
        if ready:
            print(self.text, file=self.out or sys.stdout, flush=True)
            self.printed = True
