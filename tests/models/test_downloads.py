"""Weights download against a real HTTP server on 127.0.0.1: resume, checksum, import, CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from models.weights.downloads import CATALOG, DownloadError, Release, download, fetch_release
from tests.http_files import FileServer, serve_folder


@dataclass
class Served:
    """One rosinality checkpoint served by the shared test file server (tests/http_files.py)."""

    server: FileServer
    payload: bytes
    name: str

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/{self.name}"

    @property
    def ranges(self) -> list[str | None]:
        return [wanted for _, wanted in self.server.requests]


@pytest.fixture
def server(tmp_path: Path, tiny_generator: Generator) -> Iterator[Served]:
    folder = tmp_path / "served"
    folder.mkdir()
    path = folder / "served.pt"
    torch.save({"g_ema": tiny_generator.state_dict(), "latent_avg": tiny_generator.latent_avg}, path)
    payload = path.read_bytes()
    name = f"stylegan2-tiny-{hashlib.sha256(payload).hexdigest()[:8]}.pt"
    path.rename(folder / name)
    with serve_folder(folder) as srv:
        yield Served(srv, payload, name)


def test_interrupted_download_resumes_and_imports(server: Served, tmp_path: Path, tiny_generator: Generator) -> None:
    sha = hashlib.sha256(server.payload).hexdigest()
    release = Release("tiny", server.url, sha, "rosinality", "base/generator", "test", "tiny test generator")
    server.server.cut_next = True
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


def test_checksum_mismatch_removes_the_file(server: Served, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="does not match the expected 00000000"):
        download(server.url, tmp_path / "g.pt", "00000000")
    assert not list(tmp_path.glob("g.pt*"))
    with pytest.raises(DownloadError, match=r"could not reach 127.0.0.1:9 .*copy x.pt .*--mirror"):  # port 9: dead
        download("http://127.0.0.1:9/none", tmp_path / "x.pt", "0" * 64, timeout=5)


def test_the_prefix_checksum_of_openmmlab_file_names(server: Served, tmp_path: Path) -> None:
    prefix = hashlib.sha256(server.payload).hexdigest()[:8]
    assert download(server.url, tmp_path / "g.pt", prefix).read_bytes() == server.payload
    for release in CATALOG.values():  # a prefix digest is the one in the file name (OpenMMLab, torchvision)
        if len(release.sha256) < 64:
            assert release.file_name.rsplit("-", 1)[1].startswith(release.sha256), release.name


def test_cli_download(server: Served, tmp_path: Path) -> None:
    sha = hashlib.sha256(server.payload).hexdigest()
    agilegan = Path(sys.executable).with_name("agilegan")
    result = subprocess.run(
        [
            str(agilegan),
            "weights",
            "download",
            "--url",
            server.url,
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
