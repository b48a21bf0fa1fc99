"""The shared data directory: atomic results, id-only paths, TTL sweep."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis

from service.platform.jobstore import JobStore
from service.platform.storage import Storage
from tests.service.conftest import post_photo, wait_for


def test_results_inputs_and_sweep(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    for job in (old, new):
        storage.write_input(job, b"photo")
        storage.write_result(job, "png", b"image")
    assert storage.read_input(new) == b"photo"
    found = storage.result(new)
    assert (found.fmt, found.path, found.key) == ("png", tmp_path / "results" / f"{new}.png", None)
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind
    past = time.time() - 7200
    for path in (tmp_path / "inputs" / old / "upload", tmp_path / "results" / f"{old}.png"):
        os.utime(path, (past, past))
    assert storage.sweep(3600, job_active=lambda job_id: False) == 2
    assert storage.result(old) is None and storage.result(new) is not None
    assert not (tmp_path / "inputs" / old).exists()


def test_paths_never_come_from_user_input(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    for bad in ("../etc", "a" * 32 + "/x", "ABCDEF" * 6):
        with pytest.raises(ValueError):
            storage.write_input(bad, b"x")
    with pytest.raises(ValueError):
        storage.write_result(uuid.uuid4().hex, "exe", b"x")


def test_the_sweep_keeps_the_uploads_of_queued_and_running_jobs(tmp_path: Path, redis: Redis) -> None:
    """Hardening finding 6: the sweep deleted inputs by age alone, so a job that waited longer than the
    result TTL (workers down for an hour) lost its upload and ended `internal_error`."""
    storage, jobs = Storage(tmp_path), JobStore(redis, result_ttl_s=3600)
    queued, running, done, unknown = (uuid.uuid4().hex for _ in range(4))
    for job in (queued, running, done, unknown):
        storage.write_input(job, b"photo")
        past = time.time() - 7200
        os.utime(tmp_path / "inputs" / job / "upload", (past, past))
    for job in (queued, running, done):
        jobs.create(job, "owner", "stylize", {})
    jobs.mark_running(running, "worker-1")
    jobs.mark_succeeded(done, {})
    assert storage.sweep(3600, jobs.is_active) == 2
    assert storage.read_input(queued) == storage.read_input(running) == b"photo"
    assert not (tmp_path / "inputs" / done).exists() and not (tmp_path / "inputs" / unknown).exists()


def test_a_job_whose_upload_is_gone_fails_at_once_with_a_code(make_client, make_settings, start_worker) -> None:
    """The missing upload is permanent: one typed failure, not three transient retries."""
    client = make_client()
    job = post_photo(client).json()
    storage = Storage(make_settings().data_dir)
    storage.store.delete(f"inputs/{job['id']}/upload")
    start_worker(make_settings())
    started = time.monotonic()
    done = wait_for(client, job["id"], timeout=30)
    assert done["status"] == "failed" and done["error"]["code"] == "input_missing", done
    assert time.monotonic() - started < 4.0  # the transient path would back off 1 s + 4 s first
