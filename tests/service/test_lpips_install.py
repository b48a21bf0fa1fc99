"""LPIPS-VGG by default (issue 12, finding 3): `agilegan lpips install` and the training job's choice.

The two public files (the lpips package's heads, torchvision's VGG16) are stood in for by seeded files
in their real key layouts, served by a local HTTP server; the catalog entries differ only in address
and digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from redis import Redis

from models.networks.lpips import LPIPS
from models.weights import checkpoints
from models.weights.downloads import LPIPS_FILES
from service.core.contract import TrainJob
from service.core.registry import Registry
from tests.http_files import serve_folder
from tests.models.test_lpips import _official_files
from workers import style_install
from workers.style_install import InstallError, install_lpips


@pytest.fixture(scope="module")
def lpips_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lpips-files")
    _official_files(folder)  # vgg.pth and vgg16-397923af.pth, as the public files are named
    return folder


def _releases(folder: Path, base_url: str, corrupt: bool = False):
    heads, vgg = LPIPS_FILES
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return tuple(
        dataclasses.replace(r, url=f"{base_url}/{r.file_name}", sha256="0" * 64 if corrupt else digest[r.file_name])
        for r in (heads, vgg)
    )


def test_the_catalog_names_the_public_files() -> None:
    heads, vgg = LPIPS_FILES
    assert heads.file_name == "vgg.pth" and len(heads.sha256) == 64  # the lpips 0.1.4 wheel's file
    assert vgg.file_name == "vgg16-397923af.pth" and vgg.sha256 == "397923af"  # torchvision's name
    assert heads.registry_path == vgg.registry_path == "base/lpips"


def test_install_imports_both_files_once_and_refuses_a_bad_checksum(lpips_folder: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    with serve_folder(lpips_folder) as server:
        with pytest.raises(InstallError, match="does not match"):
            install_lpips(registry, tmp_path / "cache", files=_releases(lpips_folder, server.base_url, corrupt=True))
        assert not Registry(registry).lpips_dir.exists()
        assert not (registry / "base").exists() or not list((registry / "base").iterdir())  # nothing half-done
        assert not list((tmp_path / "cache").glob("*.part"))  # the bad file is deleted
        files = _releases(lpips_folder, server.base_url)
        assert install_lpips(registry, tmp_path / "cache", files=files)
        before = len(server.requests)
        assert not install_lpips(registry, tmp_path / "cache", files=files)  # a no-op
        assert len(server.requests) == before
    model = checkpoints.load(Registry(registry).lpips_dir, expected=LPIPS)
    assert model.config.version == "0.1"


def test_a_training_job_installs_lpips_and_keeps_its_choice(
    make_settings, redis: Redis, lpips_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    from workers.runtime import Runtime
    from workers.training_job import _perceptual

    data = tmp_path / "data"
    registry = Registry(data / "registry")
    registry.write_style_meta("online", {"name": "online", "status": "pending"})
    registry.write_style_meta("offline", {"name": "offline", "status": "pending"})
    job = TrainJob(job_id="0" * 32, style_id="offline")
    # offline (nothing listens on port 9): the fallback, remembered
    settings = make_settings(data_dir=data, train_lpips="auto", download_mirror="http://127.0.0.1:9")
    settings = settings.model_copy(update={"download_timeout_s": 2.0})
    assert _perceptual(Runtime(settings, redis), job) == {"lpips_path": None}
    assert registry.read_style_meta("offline")["lpips_path"] is None
    with serve_folder(lpips_folder) as server:
        monkeypatch.setattr(style_install, "LPIPS_FILES", _releases(lpips_folder, server.base_url))
        online = Runtime(settings.model_copy(update={"download_mirror": server.base_url}), redis)
        chosen = _perceptual(online, job.model_copy(update={"style_id": "online"}))
        assert chosen == {"lpips_path": str(registry.lpips_dir)}
        assert (registry.lpips_dir / "config.json").is_file()
        # a resumed run keeps what it started with, even now that LPIPS is installed
        assert _perceptual(online, job) == {"lpips_path": None}
        # explicit overrides win
        explicit = job.model_copy(update={"overrides": {"lpips_path": None}})
        assert _perceptual(online, explicit) == {}
