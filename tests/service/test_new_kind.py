"""Adding a job kind is one row of the table (service/platform/job_kinds.py) and one module under
workers/kinds/: in a scratch copy of the packages, a throwaway `echo` kind is added that way and nothing else is
edited; it is then submitted through the platform's one submit, run by a real worker on a real Redis, read back
through the API, and it passes the layer contracts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.test_layers import _scratch_copy

ROW = """

# --- a throwaway kind, added by tests/service/test_new_kind.py
from pydantic import Field  # noqa: E402

from service.platform.contract import JOB_ID  # noqa: E402


class EchoJob(BaseModel):
    job_id: str = Field(pattern=JOB_ID.pattern)
    text: str = Field(max_length=100)


ECHO = JobKind(
    "echo",
    TRAIN_QUEUE,
    EchoJob,
    timeout_s=lambda settings, payload: 60,
    retries=lambda settings: 0,
    capped=False,
    summary="a text, shouted back",
)
KINDS[ECHO.name] = ECHO
"""

MODULE = '''"""The echo kind: its text, shouted back (a test's throwaway kind)."""

from typing import Any

from service.platform.job_kinds import ECHO as SPEC
from service.portrait.errors import InputError
from workers.context import JobContext
from workers.lifecycle import WorkerKind, record_crash, run_job

ECHO = WorkerKind(SPEC, permanent=(InputError,), default_code="echo_failed")


def run(payload: dict[str, Any]) -> dict[str, Any]:
    return run_job(ECHO, payload, _echo)


def on_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    record_crash(ECHO, job, connection, exc_type, exc_value)


def _echo(ctx: JobContext, job: Any) -> dict[str, Any]:
    if not job.text:
        raise InputError("nothing to echo")
    ctx.jobs.progress(job.job_id, "shouting", 0.5)
    return {"echo": job.text.upper()}
'''

SCRIPT = """
import json, logging, sys
from fastapi.testclient import TestClient
from redis import Redis
from service.api.app import create_app
from service.platform.job_kinds import KINDS
from service.platform.jobstore import JobStore
from service.platform.queueing import JobQueues
from service.platform.settings import Settings
from workers.worker import run_worker

logging.basicConfig(level=logging.INFO)
settings = Settings(redis_url=sys.argv[1], data_dir=sys.argv[2], auth_disabled=True)
redis = Redis.from_url(settings.redis_url)
queues = JobQueues(redis, JobStore(redis, settings.result_ttl_s), settings)
echo = KINDS["echo"]
queues.submit(echo, echo.payload(job_id="a" * 32, text="hello"), "owner", {"text": "hello"})
queues.submit(echo, echo.payload(job_id="b" * 32, text=""), "owner", {"text": ""})
run_worker(settings, [echo.queue], burst=True)
with TestClient(create_app(settings)) as client:
    print(json.dumps([client.get(f"/v1/jobs/{job_id * 32}").json() for job_id in "ab"]))
"""


def test_a_new_kind_is_a_table_row_and_a_module(tmp_path: Path, redis_url: str, redis) -> None:
    root = _scratch_copy(tmp_path / "scratch", with_console=True)  # the API serves its console
    table = root / "service" / "platform" / "job_kinds.py"
    table.write_text(table.read_text() + ROW)
    (root / "workers" / "kinds" / "echo.py").write_text(MODULE)
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, redis_url, str(tmp_path / "data")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    good, bad = json.loads(done.stdout.strip().splitlines()[-1])
    assert (good["kind"], good["status"], good["result"]) == ("echo", "succeeded", {"echo": "HELLO"}), good
    assert (bad["kind"], bad["status"], bad["error"]["code"]) == ("echo", "failed", "invalid_input"), bad
    assert "echo job " + "b" * 32 + " failed: invalid_input" in done.stderr  # its logs name the kind
    # the new module sits on the kinds' floor: the layer contracts hold with it
    lint = Path(sys.executable).with_name("lint-imports")
    linted = subprocess.run([str(lint), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert linted.returncode == 0, linted.stdout[-2000:]


def test_a_job_queued_by_a_path_before_the_table_runs_as_its_kind(
    job_ctx, aligner, make_settings, start_worker, redis
) -> None:
    """Jobs that waited in Redis across the upgrade name their function and callback by the old paths
    (`workers.jobs.stylize_job`, `workers.lifecycle.on_job_failure`, modules that are gone): a worker runs
    them as the kind they were, and rewrites both paths in the job."""
    from rq import Callback, Queue
    from rq.job import Job

    from tests.service.conftest import queue_stylize_job

    payload = queue_stylize_job(job_ctx, aligner, "obama.jpg")
    Queue("stylize", connection=redis).enqueue(
        "workers.jobs.stylize_job",
        payload.model_dump(),
        job_id=payload.job_id,
        on_failure=Callback("workers.lifecycle.on_job_failure"),
    )
    worker = start_worker(make_settings(), queues="stylize")
    deadline = time.monotonic() + 60
    while (done := job_ctx.jobs.get(payload.job_id))["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, done
        time.sleep(0.1)
    assert done["status"] == "succeeded" and done["kind"] == "stylize", done
    job = Job.fetch(payload.job_id, connection=redis)
    assert (job.func_name, job._failure_callback_name) == (
        "workers.kinds.stylize.run",
        "workers.kinds.stylize.on_failure",
    )
    assert "queued as workers.jobs.stylize_job, run as the stylize kind" in worker.log.read_text()
