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
from service.platform.contract import TrainJob
from service.platform.registry import Registry
from tests.http_files import serve_folder
from tests.models.test_lpips import _official_files
from workers.launcher import style_install
from workers.launcher.style_install import InstallError, install_lpips, lpips_for_training


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


def test_a_train_worker_installs_lpips_at_start_and_a_job_keeps_its_choice(
    make_settings, redis: Redis, lpips_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    """LPIPS-VGG is installed when a train worker starts (`lpips_for_training`, AGILEGAN_TRAIN_LPIPS=auto),
    never inside a job: a job uses what is installed, decided once per style and kept in its style.json."""
    from workers.context import JobContext
    from workers.kinds.train import StyleRecord, _perceptual

    data = tmp_path / "data"
    registry = Registry(data / "registry")
    for style in ("offline", "online"):
        registry.write_style_meta(style, {"name": style, "status": "pending"})
    job = TrainJob(job_id="0" * 32, style_id="offline")
    # offline (nothing listens on port 9): the worker starts anyway, and its jobs train without LPIPS
    settings = make_settings(data_dir=data, train_lpips="auto", download_mirror="http://127.0.0.1:9")
    settings = settings.model_copy(update={"download_timeout_s": 2.0})
    assert lpips_for_training(settings) is False and not registry.lpips_dir.exists()
    ctx = JobContext.from_settings(settings, redis)
    offline = StyleRecord.load(registry, "offline")
    assert _perceptual(ctx, offline, job) == {"lpips_path": None}
    assert registry.read_style_meta("offline")["lpips_path"] is None
    # off: no download, whatever the network
    assert lpips_for_training(settings.model_copy(update={"train_lpips": "off"})) is False
    with serve_folder(lpips_folder) as server:
        monkeypatch.setattr(style_install, "LPIPS_FILES", _releases(lpips_folder, server.base_url))
        online_settings = settings.model_copy(update={"download_mirror": server.base_url})
        assert lpips_for_training(online_settings) is True  # installed at this start
        assert lpips_for_training(online_settings) is False  # the next worker's start: already there
        before = len(server.requests)
        online = JobContext.from_settings(online_settings, redis)
        online_job = job.model_copy(update={"style_id": "online"})
        chosen = _perceptual(online, StyleRecord.load(registry, "online"), online_job)
        assert chosen == {"lpips_path": str(registry.lpips_dir)} and len(server.requests) == before  # no job download
        assert (registry.lpips_dir / "config.json").is_file()
        # a resumed run keeps what it started with, even now that LPIPS is installed
        assert _perceptual(online, StyleRecord.load(registry, "offline"), job) == {"lpips_path": None}
        # explicit overrides win
        explicit = job.model_copy(update={"overrides": {"lpips_path": None}})
        assert _perceptual(online, offline, explicit) == {}
