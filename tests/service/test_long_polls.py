"""Hardening finding 4: long-polling clients cannot starve the API's thread pool.

`GET /v1/jobs/{id}/result?wait=S` used to sleep in a sync handler, one worker thread per waiting client:
50 of them made /healthz (also sync) take 58 s. Now waiting is async and /healthz needs no thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.service.conftest import FACES, auth, free_port, serve_api, stop_process

pytestmark = pytest.mark.serial  # timing or memory bounds: run alone (Makefile), not beside other tests


def test_fifty_long_polls_leave_health_and_status_fast(make_settings, tmp_path: Path) -> None:
    port = free_port()
    api = serve_api(make_settings(), port, tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        with open(FACES / "obama.jpg", "rb") as f:  # no worker runs: the job stays queued
            job = httpx.post(
                f"{base}/v1/stylize", files={"image": f}, data={"style": "demo"}, headers=auth(), timeout=30
            ).json()
        answers: list[int] = []

        def long_poll() -> None:
            r = httpx.get(f"{base}/v1/jobs/{job['id']}/result", params={"wait": 8}, headers=auth(), timeout=30)
            answers.append(r.status_code)

        polls = [threading.Thread(target=long_poll) for _ in range(50)]
        for t in polls:
            t.start()
        time.sleep(1.5)  # every poll is waiting now
        start = time.perf_counter()
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        health_s = time.perf_counter() - start
        start = time.perf_counter()
        status = httpx.get(f"{base}/v1/jobs/{job['id']}", headers=auth(), timeout=30)
        status_s = time.perf_counter() - start
        for t in polls:
            t.join()
        assert status.status_code == 200 and status.json()["status"] == "queued"
        assert answers == [202] * 50  # each waited its 8 s and answered not_ready
        assert health_s < 1.0 and status_s < 2.0, (health_s, status_s)  # the old code: ~6.5 s each
    finally:
        stop_process(api)
