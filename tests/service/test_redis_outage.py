"""Hardening finding 9: while Redis is down the API answers 503 `unavailable` with Retry-After (it
answered 500 `internal_error`), /readyz says why, /healthz stays fast, and once Redis is back the same
API process serves again with every job it had accepted (Redis with AOF, as compose runs it).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.service.conftest import FACES, auth, free_port, stop_process
from workers.launcher.redis_server import start_redis

pytestmark = pytest.mark.serial  # timing or memory bounds: run alone (Makefile), not beside other tests

PHOTO = (FACES / "obama.jpg").read_bytes()


def _post(base: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/stylize", files={"image": ("obama.jpg", PHOTO)}, data={"style": "demo"}, headers=auth(), timeout=30
    )


def test_a_redis_outage_is_a_503_and_the_api_recovers_by_itself(make_settings, start_api, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    redis_dir = tmp_path / "redis"
    server = start_redis(url, redis_dir)
    try:
        base = start_api(make_settings(redis_url=url))
        accepted = _post(base).json()
        assert accepted["status"] == "queued"
        time.sleep(1.2)  # AOF fsync is every second

        stop_process(server)  # Redis goes away
        refused = _post(base)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "unavailable" and refused.headers["retry-after"]
        lookup = httpx.get(f"{base}/v1/jobs/{accepted['id']}", headers=auth(), timeout=30)
        assert lookup.status_code == 503 and lookup.json()["code"] == "unavailable"
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["redis"].startswith("unavailable")
        assert "Redis does not answer" in ready.json()["reasons"][0]
        started = time.perf_counter()
        for _ in range(20):
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert (time.perf_counter() - started) / 20 < 0.1

        server = start_redis(url, redis_dir)  # back, with its append-only file
        deadline = time.monotonic() + 15
        while (back := _post(base)).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert back.status_code == 202, back.text
        again = httpx.get(f"{base}/v1/jobs/{accepted['id']}", headers=auth(), timeout=30)
        assert again.status_code == 200 and again.json()["status"] == "queued"
        assert httpx.get(f"{base}/readyz", timeout=30).json()["redis"] == "ok"
    finally:
        stop_process(server)
