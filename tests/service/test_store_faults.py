"""Store faults (issue 27) against the real SeaweedFS behind a proxy that fails the network between it and
the service (tests/store_proxy.py): a worker killed with -9 in the middle of a result upload leaves no
visible object and its job is not lost; during a 5 s outage the API answers only 202 or 503 `unavailable`,
and every accepted job succeeds."""

from __future__ import annotations

import io
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.s3_server import S3Server, s3_settings, s3_store
from tests.service.conftest import auth, post_photo, wait_for
from tests.store_proxy import StoreProxy


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[StoreProxy]:
    p = StoreProxy(s3_server.endpoint)
    yield p
    p.close()


@pytest.fixture
def host(tiny_data_dir: Path, tmp_path: Path) -> Path:
    """A data directory of its own (the registry a copy): the session's tiny one stays as it was."""
    shutil.copytree(tiny_data_dir / "registry", tmp_path / "host" / "registry")
    return tmp_path / "host"


def test_a_worker_killed_mid_upload_leaves_no_object_and_loses_no_job(
    proxy: StoreProxy, s3_server: S3Server, host: Path, make_client, make_settings, start_worker
) -> None:
    s3 = {"storage": "s3", "s3_endpoint_url": proxy.endpoint, "s3_prefix": uuid.uuid4().hex, **s3_settings()}
    s3["data_dir"] = host
    client = make_client(**s3)
    bucket = s3_store(s3_server.endpoint, s3["s3_prefix"])  # the store seen directly, not through the proxy
    proxy.stall(b"/results/")
    doomed = start_worker(make_settings(**s3), queues="stylize")
    job = post_photo(client, size=256, format="png").json()
    assert proxy.stalled.wait(90), "no result upload was seen"
    assert job["id"].encode() in proxy.stalled_line
    os.kill(doomed.proc.pid, signal.SIGKILL)  # the upload is in flight: headers and a few bytes sent
    doomed.proc.wait()
    proxy.release()
    time.sleep(1.0)
    assert list(bucket.list("results/")) == []  # nothing partial is visible
    start_worker(make_settings(**s3), queues="stylize")
    done = wait_for(client, job["id"], timeout=120)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    result = client.get(f"/v1/jobs/{job['id']}/result", headers=auth())
    assert Image.open(io.BytesIO(result.content)).size == (256, 256)


def test_a_store_outage_answers_503_and_loses_nothing(
    proxy: StoreProxy, host: Path, make_client, make_settings, start_worker
) -> None:
    s3 = {"storage": "s3", "s3_endpoint_url": proxy.endpoint, "s3_prefix": uuid.uuid4().hex, **s3_settings()}
    s3.update(data_dir=host, s3_timeout_s=2.0)
    client = make_client(**s3)
    start_worker(make_settings(**s3), queues="stylize")
    accepted, answers = [], []
    outage = threading.Thread(target=proxy.outage, args=(5.0,))
    started = time.monotonic()
    outage.start()
    while time.monotonic() - started < 8:  # before, during and after the outage
        response = post_photo(client, size=256)
        answers.append((response.status_code, response.json().get("code")))
        if response.status_code == 202:
            accepted.append(response.json()["id"])
        else:
            assert response.headers.get("Retry-After") == "5", (response.status_code, response.text)
    outage.join()
    assert {a for a in answers if a[0] != 202} == {(503, "unavailable")}, answers
    assert len(accepted) >= 2, answers
    for job_id in accepted:
        assert wait_for(client, job_id, timeout=120)["status"] == "succeeded"
