"""Weights download against a real HTTP server on 127.0.0.1: resume, checksum, import, CLI."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models import checkpoints
from models.downloads import CATALOG, DownloadError, Release, download, fetch_release
from models.stylegan2 import Generator


class RangeServer(http.server.ThreadingHTTPServer):
    """Serves one file; honours Range; the first `cut_once` request stops half-way (a dropped link)."""

    payload = b""
    cut_once = False
    ranges: list[str | None]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        server: RangeServer = self.server  # type: ignore[assignment]
        data = server.payload
        wanted = self.headers.get("Range")
        server.ranges.append(wanted)
        start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
        body = data[start:]
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(body)))
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if server.cut_once:
            server.cut_once = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, tiny_generator: Generator) -> Iterator[RangeServer]:
    path = tmp_path / "served.pt"
    torch.save({"g_ema": tiny_generator.state_dict(), "latent_avg": tiny_generator.latent_avg}, path)
    srv = RangeServer(("127.0.0.1", 0), Handler)
    srv.payload, srv.ranges = path.read_bytes(), []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()


def _url(srv: RangeServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/stylegan2-tiny-{hashlib.sha256(srv.payload).hexdigest()[:8]}.pt"


def test_interrupted_download_resumes_and_imports(
    server: RangeServer, tmp_path: Path, tiny_generator: Generator
) -> None:
    sha = hashlib.sha256(server.payload).hexdigest()
    release = Release("tiny", _url(server), sha, "rosinality", "base/generator", "test", "tiny test generator")
    server.cut_once = True
    with pytest.raises(DownloadError, match="interrupted"):
        fetch_release(release, tmp_path / "cache", tmp_path / "registry")
    parts = list((tmp_path / "cache").glob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < len(server.payload)
    target = fetch_release(release, tmp_path / "cache", tmp_path / "registry")
    assert server.ranges[-1] == f"bytes={len(server.payload) // 2}-"  # resumed, not restarted
    loaded = checkpoints.load(target, expected=Generator)
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded(z), tiny_generator(z))
    assert checkpoints.read_info(target).provenance.source_sha256 == sha


def test_checksum_mismatch_removes_the_file(server: RangeServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="does not match the expected 00000000"):
        download(_url(server), tmp_path / "g.pt", "00000000")
    assert not list(tmp_path.glob("g.pt*"))
    with pytest.raises(DownloadError, match="interrupted"):  # nothing listens on port 9
        download("http://127.0.0.1:9/none", tmp_path / "x.pt", "0" * 64, timeout=5)


def test_the_prefix_checksum_of_openmmlab_file_names(server: RangeServer, tmp_path: Path) -> None:
    prefix = hashlib.sha256(server.payload).hexdigest()[:8]
    assert download(_url(server), tmp_path / "g.pt", prefix).read_bytes() == server.payload
    for release in CATALOG.values():  # the catalog's prefixes are the ones in the file names
        assert release.url.rsplit("-", 1)[1].startswith(release.sha256)


def test_cli_download(server: RangeServer, tmp_path: Path) -> None:
    sha = hashlib.sha256(server.payload).hexdigest()
    agilegan = Path(sys.executable).with_name("agilegan")
    result = subprocess.run(
        [
            str(agilegan),
            "weights",
            "download",
            "--url",
            _url(server),
            "--sha256",
            sha,
            "--format",
            "rosinality",
            "--to",
            "styles/tiny",
            "--registry",
            str(tmp_path / "reg"),
            "--cache",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reg" / "styles" / "tiny" / "model.safetensors").is_file()
    bad = subprocess.run([str(agilegan), "weights", "download", "no-such-release"], capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown release" in bad.stderr
    listed = subprocess.run([str(agilegan), "weights", "list"], capture_output=True, text=True)
    assert "ffhq-1024-mmgen" in listed.stdout
