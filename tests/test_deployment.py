"""docker-compose.yml and the Dockerfiles keep their promises (checked without a Docker engine)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.platform.settings import Settings
from workers.launcher.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


class _Loader(yaml.SafeLoader):
    """Accepts compose's `!reset` / `!override` tags."""


_Loader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        loader.construct_mapping(node)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)
    ),
)


def compose(name: str = "docker-compose.yml") -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=_Loader)


def dockerfile(name: str) -> str:
    return (ROOT / "docker" / name).read_text()


def test_services_and_their_commands_exist() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "api", "worker-stylize", "worker-train", "worker-video"}
    parser = build_parser()
    for name in ("worker-stylize", "worker-train", "worker-video"):
        args = parser.parse_args(services[name]["command"])  # the worker image's entrypoint is `agilegan`
        assert args.command == "worker"
        assert args.queues == name.split("-")[1]
    assert re.search(r"uvicorn --factory service\.api\.app:create_app", dockerfile("api.Dockerfile"))
    assert re.findall(r"^COPY (\S+)", dockerfile("api.Dockerfile"), re.M) == ["docker/requirements-api.txt", "service"]
    from service.api.app import create_app  # the factory the API image runs

    assert callable(create_app)


def test_every_agilegan_variable_is_a_real_setting() -> None:
    known = {f"AGILEGAN_{name.upper()}" for name in Settings.model_fields}
    used = set()
    for doc in (compose(), compose("docker-compose.cpu.yml"), compose("docker-compose.s3.yml")):
        for service in doc["services"].values():
            used |= {k for k in (service.get("environment") or {}) if k.startswith("AGILEGAN_")}
    for name in ("api.Dockerfile", "worker.Dockerfile"):
        used |= set(re.findall(r"\b(AGILEGAN_[A-Z_]+)=", dockerfile(name)))
    assert used and used <= known, used - known


def test_healthchecks_point_at_real_endpoints() -> None:
    services = compose()["services"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    from service.api.app import create_app

    paths = set(create_app(Settings(api_keys="x" * 16 + ":client")).openapi()["paths"])
    assert "/healthz" in api_check and "/healthz" in paths
    assert "/healthz" in dockerfile("api.Dockerfile")
    assert 'CMD ["agilegan", "worker-alive"]' in dockerfile("worker.Dockerfile")
    assert build_parser().parse_args(["worker-alive"]).command == "worker-alive"


def test_gpu_reservations_and_shutdown_grace() -> None:
    services = compose()["services"]
    for name in ("worker-stylize", "worker-train", "worker-video"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
        assert "device_ids" in devices[0] and "count" not in devices[0]  # one service per GPU
    assert services["worker-train"]["stop_grace_period"] == "10m"
    cpu = compose("docker-compose.cpu.yml")["services"]
    assert all(
        cpu[name]["deploy"] == {} and cpu[name]["environment"]["AGILEGAN_DEVICE"] == "cpu"
        for name in ("worker-stylize", "worker-train", "worker-video")
    )


def test_redis_persists_and_never_evicts() -> None:
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert redis["volumes"] == ["redis:/data"]
    data_users = [n for n, s in compose()["services"].items() if "data:/data" in (s.get("volumes") or [])]
    assert set(data_users) == {"api", "worker-stylize", "worker-train", "worker-video"}  # one shared data volume


def test_images_are_pinned_non_root_and_the_api_has_no_torch() -> None:
    for name in ("api.Dockerfile", "worker.Dockerfile"):
        text = dockerfile(name)
        base = re.search(r"^FROM (\S+)", text, re.M).group(1)
        assert re.search(r":\d+\.\d+", base) and "latest" not in base, base
        assert re.search(r"^USER (?!root)\S+", text, re.M)
    lines = (ROOT / "docker" / "requirements-api.txt").read_text().lower().splitlines()
    requirements = [line for line in lines if line.strip() and not line.startswith("#")]
    assert len(requirements) > 5 and not any("torch" in line for line in requirements)
    assert "requirements-api.txt" in dockerfile("api.Dockerfile") and "pip install /app" not in dockerfile(
        "api.Dockerfile"
    )
    assert "torch==2.13.0" in dockerfile("worker.Dockerfile")
    secrets = compose()["services"]["api"]
    assert secrets["environment"]["AGILEGAN_API_KEYS_FILE"] == "/run/secrets/api_keys"
    assert "AGILEGAN_API_KEYS" not in secrets["environment"]  # keys come from a file, never the image
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", "data/", ".git/"} <= set(ignored)


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="docker compose is not installed here",
)
def test_docker_compose_config_validates(tmp_path: Path) -> None:
    secret = tmp_path / "api_keys"
    secret.write_text("0" * 64 + ":operator\n")
    for files in (
        ["docker-compose.yml"],
        ["docker-compose.yml", "docker-compose.cpu.yml"],
        ["docker-compose.yml", "docker-compose.s3.yml"],
    ):
        args = [a for f in files for a in ("-f", str(ROOT / f))]
        result = subprocess.run(
            ["docker", "compose", *args, "config", "-q"],
            capture_output=True,
            text=True,
            env={"AGILEGAN_API_KEYS_SECRET": str(secret), "PATH": "/usr/bin:/usr/local/bin"},
        )
        assert result.returncode == 0, result.stderr


def test_the_s3_profile_shares_nothing_but_redis_and_the_store() -> None:
    """In docker-compose.s3.yml each of the API and the workers has its own data volume and the S3
    settings; the store is the SeaweedFS service they wait for."""
    base, s3 = compose()["services"], compose("docker-compose.s3.yml")
    users = ("api", "worker-stylize", "worker-train", "worker-video")
    volumes = [s3["services"][name]["volumes"] for name in users]
    assert all(len(v) == 1 and v[0].endswith(":/data") for v in volumes)
    assert len({v[0].split(":")[0] for v in volumes}) == len(users)  # no volume shared
    for name in users:
        assert name in base
        env = s3["services"][name]["environment"]
        assert env["AGILEGAN_STORAGE"] == "s3" and "seaweedfs:8333" in env["AGILEGAN_S3_ENDPOINT_URL"]
        assert s3["services"][name]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert re.search(r":\d+\.\d+", s3["services"]["seaweedfs"]["image"])  # pinned
