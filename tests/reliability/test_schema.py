"""A bounded schemathesis run over the live OpenAPI document (hardening finding 14, and the suite that
keeps it so): every operation with generated inputs (valid and schema-violating), an operator key, a
real API process and a real Redis, then linked sequences of calls (stateful, by the `st` CLI). Asserted:
schemathesis' own checks (undocumented statuses, content types, headers and bodies against the schema,
`Allow` on 405, deleted resources still answering, keyless requests answered, …) and the two of
`hooks.py`: no 5xx but documented 503s, and no schema-valid form refused as invalid.

Bounded: 80 cases per operation, 40 stateful scenarios; well under a minute on the 2-core CI machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service.api.app import create_app
from service.platform.settings import Settings
from tests.reliability import hooks
from tests.service.conftest import FACES, KEYS, OPERATOR_KEY, free_port, serve_api, stop_process
from workers.launcher.demo import demo_registry

HEADERS = {"Authorization": f"Bearer {OPERATOR_KEY}"}
EXCLUDED = [getattr(schemathesis.checks, name) for name in hooks.REPLACED]
ROOT = Path(__file__).resolve().parents[2]
BOUNDS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure here is reproducible
)


@pytest.fixture(scope="module")
def api_base(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("schema-data")
    demo_registry(data / "registry", size=64, tiny=True)
    settings_ = Settings(
        redis_url=redis_url.rsplit("/", 1)[0] + "/1",  # its own database: other tests flush /0
        data_dir=data,
        api_keys=KEYS,
        rate_limit_per_minute=0,
        failed_auth_per_minute=0,  # schemathesis sends keyless requests on purpose
        align_transform_size=1024,
    )
    port = free_port()
    proc = serve_api(settings_, port, Path(data) / "api.log")
    base = f"http://127.0.0.1:{port}"
    for _ in range(3):  # jobs to find, cancel, delete and look up again (no worker: they stay queued)
        with open(FACES / "obama.jpg", "rb") as photo:
            r = httpx.post(f"{base}/v1/stylize", files={"image": photo}, data={"style": "demo"}, headers=HEADERS)
        assert r.status_code == 202, r.text
    yield base
    stop_process(proc)


def _openapi_document() -> dict:
    """The document the API serves (built here to parametrize at collection time; the lazy fixture
    loader of schemathesis 4.32 fails on pytest 9). `test_the_served_document_is_this_one` checks
    that the running API serves the very same."""
    with tempfile.TemporaryDirectory() as data:
        return create_app(Settings(data_dir=Path(data), api_keys=KEYS)).openapi()


DOCUMENT = _openapi_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def api_schema(api_base: str):
    return schemathesis.openapi.from_url(f"{api_base}/openapi.json")


def test_the_served_document_is_this_one(api_schema) -> None:
    assert api_schema.raw_schema == DOCUMENT


@schema.parametrize()
@BOUNDS
def test_every_operation_keeps_to_its_schema(case, api_base: str) -> None:
    hooks.bound_wait(case)
    case.call_and_validate(
        base_url=api_base,
        headers=HEADERS,
        excluded_checks=EXCLUDED,
        additional_checks=[hooks.documented_503_only, hooks.schema_valid_forms_parse],
        timeout=30,
    )


def test_workflows_keep_to_the_schema(api_base: str) -> None:
    """Stateful: sequences of calls linked by what they return (list jobs → cancel → delete → look up
    again, style → delete → look up, …), by the `st` CLI, whose engine runs them against a live
    server (hypothesis' own state machine replays choices, which a server's moving state breaks)."""
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{api_base}/openapi.json",
            "--header",
            f"Authorization: Bearer {OPERATOR_KEY}",
            "--phases",
            "stateful",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--exclude-checks",
            ",".join(hooks.REPLACED),
            "--request-timeout",
            "30",
            "--no-color",
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.reliability.hooks"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Stateful" in run.stdout and "passed" in run.stdout
