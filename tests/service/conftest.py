"""A real Redis, a tiny model registry, the API app and real worker processes.

Redis: the `redis_url` and `redis` fixtures of tests/conftest.py (a redis-server of this test session).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Worker

from models.inference.directions import DirectionSet, sefa
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from service.api.app import create_app
from service.platform.settings import Settings
from service.portrait.checkpoint_files import w_space_id
from service.portrait.configs import AlignerConfig
from service.portrait.media.alignment import FaceAligner
from tests.conftest import free_port
from workers.launcher.demo import demo_registry

FACES = Path(__file__).parents[1] / "data" / "faces"
CLIENT_KEY, OTHER_KEY, OPERATOR_KEY = "client-key-0000000001", "client-key-0000000002", "operator-key-000000001"
KEYS = f"{CLIENT_KEY}:client,{OTHER_KEY}:client,{OPERATOR_KEY}:operator"


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    demo_registry(data / "registry", size=64, tiny=True)
    return data


@pytest.fixture(scope="session")
def aligner() -> FaceAligner:
    return FaceAligner(AlignerConfig())


@pytest.fixture
def directions(tiny_data_dir: Path, tmp_path: Path):
    """SeFa of the base generator (the demo style's w space) and of another mapping (a generator of
    the same shape with its own random mapping, which no encoder of the registry shares)."""
    registry = tiny_data_dir / "registry"
    base = checkpoints.load(registry / "base" / "generator", expected=Generator)
    checkpoints.save(tmp_path / "alien", Generator(base.config))
    for name, source in (("sefa", registry / "base" / "generator"), ("alien", tmp_path / "alien")):
        g = checkpoints.load(source, expected=Generator)
        vectors, values, _ = sefa(g.state_dict(), g.n_latent, None, k=4)
        DirectionSet(name, "sefa", vectors, w_space_id(source), eigenvalues=values, alpha_range=(-4, 4)).save(
            registry / "directions" / f"{name}.npz"
        )
    yield registry
    shutil.rmtree(registry / "directions", ignore_errors=True)


@pytest.fixture
def make_settings(redis: Redis, redis_url: str, tiny_data_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values = {
            "redis_url": redis_url,
            "data_dir": tiny_data_dir,
            "api_keys": KEYS,
            "align_transform_size": 1024,
            "heartbeat_interval_s": 1.0,
            "heartbeat_ttl_s": 6,
            "maintenance_interval_s": 2,
            "worker_ttl_s": 16,
            "job_timeout_s": 60,
            "rate_limit_per_minute": 1000,
            "train_lpips": "off",  # no LPIPS download from training tests (tested on its own)
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def job_ctx(make_settings: Callable[..., Settings], redis: Redis, monkeypatch: pytest.MonkeyPatch):
    """A worker's job context in this process (the one job functions find), on the tiny registry."""
    from workers import context

    ctx = context.JobContext.from_settings(make_settings(), redis)
    monkeypatch.setattr(context, "_CONTEXT", ctx)
    return ctx


@pytest.fixture
def serving(job_ctx, monkeypatch: pytest.MonkeyPatch):
    """The worker's serving cache in this process (the one the stylize, animate and fit_direction kinds find)."""
    from workers.serving import cache as cache_module

    cache = cache_module.ServingCache(job_ctx)
    monkeypatch.setattr(cache_module, "_CACHE", cache)
    yield cache
    cache.cpu_pool.shutdown()


def queue_stylize_job(ctx, aligner: FaceAligner, photo: str = "obama.jpg", data: bytes | None = None, **fields):
    """A stylize job as the API leaves it (its upload stored, its record queued, landmarks found in
    `photo`), not on any queue: its payload, for `workers.kinds.stylize.run` or the batch pipeline."""
    import uuid

    from PIL import Image

    from service.platform.contract import StylizeJob

    landmarks = aligner.detect(Image.open(FACES / photo).convert("RGB"))[0].landmarks.tolist()
    job = StylizeJob(job_id=uuid.uuid4().hex, style="demo", landmarks=landmarks, **{"size": 256, **fields})
    ctx.storage.write_input(job.job_id, data if data is not None else (FACES / photo).read_bytes())
    ctx.jobs.create(job.job_id, CLIENT_KEY, "stylize", {})
    return job


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3-compatible server (SeaweedFS) for this test process (tests/s3_server.py)."""
    from tests.s3_server import start_s3_server, wait_until_serving

    server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    wait_until_serving(server)
    yield server
    server.stop()


@pytest.fixture
def make_client(make_settings: Callable[..., Settings], aligner: FaceAligner) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides), aligner=aligner))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"AGILEGAN_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """`agilegan worker` as a real subprocess."""

    def __init__(self, settings: Settings, queues: str = "stylize,train", log: Path | None = None) -> None:
        self.settings = settings
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.launcher.cli", "worker", "--queues", queues],
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, redis: Redis, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(w.name.endswith(f".{self.proc.pid}") for w in Worker.all(connection=redis)):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self._tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker did not register: {self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log and self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def start_worker(redis: Redis, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(settings: Settings, queues: str = "stylize,train", wait: bool = True) -> WorkerProcess:
        worker = WorkerProcess(settings, queues, log=tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        if wait:
            worker.wait_ready(redis)
        return worker

    yield start
    for worker in started:
        worker.stop()


def serve_api(settings: Settings, port: int, log: Path) -> subprocess.Popen:
    """`agilegan serve` as a real subprocess on `port`, returned once /healthz answers."""
    import httpx2 as httpx

    env = settings_env(settings)
    env["AGILEGAN_PORT"] = str(port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.launcher.cli", "serve"],
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError(log.read_text()[-2000:])


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[[Settings], str]]:
    """`agilegan serve` subprocesses (real uvicorn, real concurrency); returns each one's base URL."""
    started: list[subprocess.Popen] = []

    def start(settings: Settings) -> str:
        port = free_port()
        started.append(serve_api(settings, port, tmp_path / f"api-{len(started)}.log"))
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        stop_process(proc)


def auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for(
    client: TestClient,
    job_id: str,
    key: str = CLIENT_KEY,
    timeout: float = 60,
    until: tuple[str, ...] = ("succeeded", "failed", "canceled"),
) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
        if body["status"] in until:
            return body
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} still {body['status']}")


def post_photo(client: TestClient, photo: str | bytes = "astronaut", key: str = CLIENT_KEY, **fields: object):
    if isinstance(photo, bytes):
        data, name = photo, "upload.bin"
    elif photo == "astronaut":
        import io

        from PIL import Image
        from skimage import data as skdata

        buf = io.BytesIO()
        Image.fromarray(skdata.astronaut()).save(buf, format="PNG")
        data, name = buf.getvalue(), "astronaut.png"
    else:
        data, name = (FACES / photo).read_bytes(), photo
    form = {"style": "demo", **{k: str(v) for k, v in fields.items()}}
    return client.post("/v1/stylize", files={"image": (name, data)}, data=form, headers=auth(key))
