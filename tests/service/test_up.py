"""`agilegan up` (what `make run` runs): Redis when none answers, the demo style, three workers and the API,
supervised (a child that dies is restarted; every child is stopped and reaped on SIGTERM); the ready line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from tests.service.conftest import FACES, free_port
from workers.launcher.redis_server import redis_answers


def test_up_runs_the_whole_path_on_a_fresh_data_directory(tmp_path: Path) -> None:
    port, redis_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    assert not redis_answers(redis_url)
    env = {
        **os.environ,
        "AGILEGAN_PORT": str(port),
        "AGILEGAN_REDIS_URL": redis_url,
        "AGILEGAN_DATA_DIR": str(tmp_path / "data"),
        "AGILEGAN_ALIGN_TRANSFORM_SIZE": "1024",
        "AGILEGAN_DOWNLOAD_MIRROR": "http://127.0.0.1:9",  # a dead network: nothing listens on port 9
        "AGILEGAN_DOWNLOAD_TIMEOUT_S": "5",
    }
    env.pop("AGILEGAN_API_KEYS", None)
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.launcher.cli", "up"],
        env=env,
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and "ready: API on" not in log.read_text():
            time.sleep(0.3)
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200, log.read_text()[-3000:]
        assert redis_answers(redis_url)  # it started its own Redis
        text = log.read_text()
        # the ready line came once the API answered (uvicorn's start-up line and a 200 /readyz before it)
        ready_at = text.index("ready: API on")
        assert text.index("Application startup complete") < text.index('"GET /readyz HTTP/1.1" 200') < ready_at
        assert "/console" in text[ready_at:] and "/result?wait=60" in text[ready_at:]
        # the first run tried the public toonify style, and fell back to the demo in one clear line
        assert "serving the offline demo style 'demo' instead" in log.read_text()
        assert "style=demo" in log.read_text()
        key = (tmp_path / "data" / "operator.key").read_text().strip()
        assert key in log.read_text()  # printed for the operator
        headers = {"Authorization": f"Bearer {key}"}
        with open(FACES / "obama.jpg", "rb") as f:
            job = httpx.post(
                f"{base}/v1/stylize",
                files={"image": f},
                data={"style": "demo", "size": "256"},
                headers=headers,
                timeout=30,
            )
        assert job.status_code == 202, job.text
        result = httpx.get(
            f"{base}/v1/jobs/{job.json()['id']}/result", params={"wait": 60}, headers=headers, timeout=90
        )
        assert result.status_code == 200 and result.headers["content-type"] == "image/png"
        styles = httpx.get(f"{base}/v1/styles", headers=headers, timeout=5).json()["styles"]
        assert styles[0]["id"] == "demo" and "random-weights" in styles[0]["labels"]
        # its worker yields the shared CPU to the API (AGILEGAN_WORKER_NICE), the API does not
        children = {int(p): Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0") for p in _children(proc.pid)}
        niceness = {b"worker" in cmd: os.getpriority(os.PRIO_PROCESS, pid) for pid, cmd in children.items()}
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert niceness == {True: min(19, own + 10), False: own}, (niceness, children)
        # a child that dies is restarted, not a reason to stop the service
        train = next(pid for pid, cmd in children.items() if b"train" in cmd)
        os.kill(train, signal.SIGKILL)
        deadline = time.time() + 60
        while time.time() < deadline and "restarted train worker" not in log.read_text():
            time.sleep(0.2)
        assert f"train worker (pid {train}) exited with signal SIGKILL" in log.read_text()
        assert "restarted train worker" in log.read_text() and proc.poll() is None
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)  # to `up` alone: it must stop its children itself
        proc.wait(timeout=60)
    assert not redis_answers(redis_url)  # it stopped its Redis again,
    orphans = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert orphans == [], orphans  # and its worker and API


def _children(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
