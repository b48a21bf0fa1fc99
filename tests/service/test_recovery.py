"""Nothing accepted is lost: a worker killed mid-job, an API restarted, a running job canceled."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from redis import Redis

from tests.service.conftest import CLIENT_KEY, FACES, auth, post_photo, serve_api, wait_for
from workers.launcher.demo import demo_registry


@pytest.fixture(scope="module")
def slow_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full-size demo (1024 px generator, FFHQ 4096 transform): a job takes a couple of seconds."""
    data = tmp_path_factory.mktemp("slow")
    demo_registry(data / "registry", size=1024)
    return data


def _wait_status(client, job_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/v1/jobs/{job_id}", headers=auth()).json()
        if body["status"] in statuses:
            return body
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} never reached {statuses}")


def test_a_worker_killed_mid_job_is_replaced_and_the_job_finishes(
    make_client, make_settings, start_worker, slow_data_dir: Path, redis: Redis
) -> None:
    settings = make_settings(data_dir=slow_data_dir, align_transform_size=4096)
    client = make_client(data_dir=slow_data_dir, align_transform_size=4096)
    doomed = start_worker(settings, queues="stylize")
    job = post_photo(client, size=256).json()
    running = _wait_status(client, job["id"], ("running",))
    assert running["stage"] in (None, "load", "align")  # mid-job
    os.kill(doomed.proc.pid, signal.SIGKILL)
    killed_at = time.time()
    doomed.proc.wait()
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth()).json()["status"] == "running"

    start_worker(settings, queues="stylize")
    done = wait_for(client, job["id"], timeout=90)
    recovery = time.time() - killed_at
    assert done["status"] == "succeeded", done
    # bound: the dead worker's heartbeat TTL + one maintenance interval + the job itself + start-up slack
    assert recovery < settings.heartbeat_ttl_s + settings.maintenance_interval_s + 30, recovery
    assert client.get(f"/v1/jobs/{job['id']}/result", headers=auth()).status_code == 200


def test_a_running_job_can_be_canceled(make_client, make_settings, start_worker, slow_data_dir: Path) -> None:
    settings = make_settings(data_dir=slow_data_dir, align_transform_size=4096)
    client = make_client(data_dir=slow_data_dir, align_transform_size=4096)
    start_worker(settings, queues="stylize")
    job = post_photo(client, size=256).json()
    _wait_status(client, job["id"], ("running",))
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth()).status_code == 200
    assert wait_for(client, job["id"])["status"] == "canceled"
    follow = post_photo(client, size=256).json()  # the worker goes on serving
    assert wait_for(client, follow["id"])["status"] == "succeeded"


def test_the_api_restarted_between_enqueue_and_completion_still_reports_the_job(
    make_settings, start_worker, tmp_path: Path
) -> None:
    settings = make_settings()
    port = 18000 + os.getpid() % 1000
    api = serve_api(settings, port, tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    with open(FACES / "obama.jpg", "rb") as f:
        accepted = httpx.post(
            f"{base}/v1/stylize",
            files={"image": ("obama.jpg", f)},
            data={"style": "demo", "size": "256"},
            headers=auth(),
            timeout=30,
        )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    api.send_signal(signal.SIGKILL)
    api.wait()

    start_worker(settings, queues="stylize")  # the job runs while no API is up
    api = serve_api(settings, port, tmp_path / "api.log")
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            body = httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth(CLIENT_KEY), timeout=5).json()
            if body["status"] == "succeeded":
                break
            time.sleep(0.2)
        assert body["status"] == "succeeded", body
        result = httpx.get(f"{base}/v1/jobs/{job_id}/result", headers=auth(), timeout=5)
        assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    finally:
        api.terminate()
        api.wait(timeout=20)


def test_a_recovered_job_reads_queued_with_its_attempts(
    make_client, make_settings, start_worker, slow_data_dir: Path, redis: Redis
) -> None:
    """Hardening finding 11: once rq re-queued a dead worker's job, our record still said `running`
    (for minutes, while it waited for a free worker). It now reads `queued`, with the attempt count."""
    from rq.registry import StartedJobRegistry

    from workers import context

    settings = make_settings(data_dir=slow_data_dir, align_transform_size=4096)
    client = make_client(data_dir=slow_data_dir, align_transform_size=4096)
    doomed = start_worker(settings, queues="stylize")
    job = post_photo(client, size=256).json()
    assert _wait_status(client, job["id"], ("running",))["attempts"] == 1
    os.kill(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait()
    time.sleep(settings.heartbeat_ttl_s + 1)  # the dead worker's execution entry expires
    # the maintenance pass a live worker runs (here in this process, so that no worker takes the job)
    context.configure_context(settings)
    try:
        StartedJobRegistry("stylize", connection=redis).cleanup()
    finally:
        context._CONTEXT = None
    requeued = client.get(f"/v1/jobs/{job['id']}", headers=auth()).json()
    assert requeued["status"] == "queued" and requeued["attempts"] == 1 and requeued["stage"] is None, requeued
    assert requeued["position"] == 0
    start_worker(settings, queues="stylize")
    done = wait_for(client, job["id"], timeout=90)
    assert done["status"] == "succeeded" and done["attempts"] == 2
