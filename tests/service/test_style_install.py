"""`agilegan styles install`: public styles from FaceStylor-format files, served by a real HTTP server.

The files are FaceStylor checkpoints in the published key layout at test size (tests/facestylor_weights.py),
named the OpenMMLab way (`…-<sha256[:8]>.pth`) and described by a catalog shaped like the public one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from models.networks.encoder import Inverter
from models.networks.stylegan2 import Generator
from models.weights import checkpoints
from models.weights.downloads import Release, StylePreset
from service.platform.registry import Registry
from tests.facestylor_weights import checkpoint_file, tiny_encoder_entries, tiny_transfer_entries, weights
from tests.http_files import FileServer, serve_folder
from workers.launcher.style_install import InstallError, install_style


def _named(path: Path, stem: str) -> Path:
    """Rename to the OpenMMLab pattern `<stem>-<sha256[:8]>.pth`."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return path.rename(path.with_name(f"{stem}-{sha}.pth"))


@pytest.fixture(scope="session")
def facestylor_release_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """(folder of .pth files, catalog, presets) for a tiny public-style release."""
    folder = tmp_path_factory.mktemp("releases")
    encoder = _named(checkpoint_file(folder / "enc.pth", weights(tiny_encoder_entries(), 21)), "agile_encoder_tiny")
    style = _named(checkpoint_file(folder / "toon.pth", weights(tiny_transfer_entries(), 22)), "agile_transfer_tiny")

    def release(name: str, path: Path, fmt: str, to: str) -> Release:
        sha = path.stem.rsplit("-", 1)[1]
        return Release(name, f"https://download.invalid/{path.name}", sha, fmt, to, "test licence", name, 1)

    catalog = {
        "enc-tiny": release("enc-tiny", encoder, "facestylor-encoder", "encoders/facestylor-tiny"),
        "toon-tiny": release("toon-tiny", style, "facestylor-transfer", "styles/toontiny"),
    }
    presets = {"toontiny": StylePreset("toontiny", "Tiny toon", "toon-tiny", "enc-tiny", 2, "test style")}
    return folder, catalog, presets


def _install(server: FileServer, files: tuple, registry: Path, cache: Path, **kwargs):
    _, catalog, presets = files
    return install_style(
        "toontiny", registry, cache, mirror=server.base_url, timeout=10, catalog=catalog, presets=presets, **kwargs
    )


def test_install_resumes_after_a_cut_and_registers_the_pairing(facestylor_release_files, tmp_path: Path) -> None:
    folder = facestylor_release_files[0]
    registry, cache = tmp_path / "registry", tmp_path / "cache"
    with serve_folder(folder) as server:
        server.cut_next = True  # the encoder download drops half-way
        with pytest.raises(InstallError, match="interrupted"):
            _install(server, facestylor_release_files, registry, cache)
        assert not (registry / "encoders").exists() or not any((registry / "encoders").iterdir())
        assert Registry(registry).style("toontiny") is None  # nothing half-imported
        assert len(list(cache.glob("*.part"))) == 1

        done = _install(server, facestylor_release_files, registry, cache)
        resumed = [r for p, r in server.requests if "encoder" in p]
        assert resumed[-1] is not None and resumed[-1].startswith("bytes=")  # resumed, not restarted
        assert done.changed and done.encoder == "facestylor-tiny"

        before = len(server.requests)
        again = _install(server, facestylor_release_files, registry, cache)
        assert not again.changed and len(server.requests) == before  # a no-op: nothing fetched

    info = Registry(registry).style("toontiny")
    assert info.status == "ready" and info.encoder == "facestylor-tiny"
    assert info.source == "encoders/facestylor-tiny/source"
    assert info.controls["structure"] == {"default": 2, "min": 0, "max": 4}
    checkpoints.load(registry / "encoders" / "facestylor-tiny", expected=Inverter)
    style = checkpoints.load(registry / "styles" / "toontiny", expected=Generator)
    source = checkpoints.load(registry / info.source, expected=Generator)
    assert style.config == source.config
    assert not [p for p in (registry / "styles").iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_checksum_mismatch_deletes_the_partial_file(facestylor_release_files, tmp_path: Path) -> None:
    folder, catalog, presets = facestylor_release_files
    bad = dict(catalog)
    bad["enc-tiny"] = Release(**{**catalog["enc-tiny"].__dict__, "sha256": "00000000"})
    with serve_folder(folder) as server:
        with pytest.raises(InstallError, match="does not match"):
            install_style(
                "toontiny", tmp_path / "r", tmp_path / "c", mirror=server.base_url, catalog=bad, presets=presets
            )
    assert list((tmp_path / "c").glob("*")) == []
    assert Registry(tmp_path / "r").style("toontiny") is None


def test_unknown_style_and_dead_network_fail_fast_and_clearly(facestylor_release_files, tmp_path: Path) -> None:
    _, catalog, presets = facestylor_release_files
    with pytest.raises(InstallError, match="unknown style 'nope'"):
        install_style("nope", tmp_path / "r", tmp_path / "c", catalog=catalog, presets=presets)
    with pytest.raises(InstallError, match=r"could not reach 127.0.0.1:9 .*offline.*--mirror"):  # port 9: dead
        install_style(
            "toontiny", tmp_path / "r", tmp_path / "c", mirror="http://127.0.0.1:9", catalog=catalog, presets=presets
        )


@pytest.fixture(scope="module")
def installed_data_dir(tmp_path_factory: pytest.TempPathFactory, facestylor_release_files) -> Path:
    """The tiny demo registry plus the tiny public style, installed the way `styles install` does."""
    from workers.launcher.demo import demo_registry

    data = tmp_path_factory.mktemp("installed")
    demo_registry(data / "registry", size=64, tiny=True)
    with serve_folder(facestylor_release_files[0]) as server:
        _install(server, facestylor_release_files, data / "registry", data / "downloads")
    return data


def _expected_png(data: Path, photo: str, strength: float, structure: int, size: int, aligner) -> bytes:
    """The stylize pipeline computed here, from the installed files: what the worker must return."""
    import torch
    from PIL import Image

    from models.inference.pipeline import resize_pixels, to_pixels
    from models.inference.style_strength import interpolate_generators, render
    from models.networks.encoder import image_to_tensor
    from service.platform.contract import ALIGNED_SIZE
    from service.portrait.media.alignment import align_landmarks
    from service.portrait.media.images import encode_image, load_image
    from tests.service.conftest import FACES

    registry = data / "registry"
    inverter = checkpoints.load(registry / "encoders" / "facestylor-tiny", expected=Inverter)
    source = checkpoints.load(registry / "encoders" / "facestylor-tiny" / "source", expected=Generator)
    style = checkpoints.load(registry / "styles" / "toontiny", expected=Generator)
    image = load_image((FACES / photo).read_bytes()).image
    landmarks = aligner.detect(image)[0].landmarks
    crop = align_landmarks(image, landmarks, ALIGNED_SIZE, 1024).image
    with torch.inference_mode():
        wplus = inverter(image_to_tensor(crop, 64)).wplus
        out = render(interpolate_generators(source, style, strength), wplus, structure, source)
    return encode_image(Image.fromarray(resize_pixels(to_pixels(out)[0], size).numpy()), "png")


def test_an_installed_style_serves_structure_and_strength(
    make_client, make_settings, start_worker, installed_data_dir: Path, aligner
) -> None:
    from tests.service.conftest import auth, post_photo, wait_for

    client = make_client(data_dir=installed_data_dir)
    import torch

    # the worker renders on as many torch threads as `_expected_png` does here (one per xdist process): the
    # bytes are compared, and a float sum split another way can move a pixel by one level
    start_worker(make_settings(data_dir=installed_data_dir, torch_threads=torch.get_num_threads()), queues="stylize")
    style = client.get("/v1/styles/toontiny", headers=auth()).json()
    assert style["encoder"] == "facestylor-tiny"
    assert style["controls"]["structure"]["default"] == 2 and style["controls"]["strength"]["max"] == 1.0

    results = {}
    for structure, strength in ((0, 0.0), (0, 1.0), (2, 0.5), (None, 1.0)):
        fields = {"style": "toontiny", "size": 256, "strength": strength}
        if structure is not None:
            fields["structure"] = structure
        job = post_photo(client, "obama.jpg", **fields).json()
        done = wait_for(client, job["id"])
        assert done["status"] == "succeeded", done
        assert done["result"]["strength"] == strength
        assert done["result"]["structure"] == (2 if structure is None else structure)  # the style's default
        results[(structure, strength)] = client.get(f"/v1/jobs/{job['id']}/result", headers=auth()).content

    assert results[(0, 0.0)] == _expected_png(installed_data_dir, "obama.jpg", 0.0, 0, 256, aligner)  # the source
    assert results[(0, 1.0)] == _expected_png(installed_data_dir, "obama.jpg", 1.0, 0, 256, aligner)  # the style
    assert results[(2, 0.5)] == _expected_png(installed_data_dir, "obama.jpg", 0.5, 2, 256, aligner)
    assert len(set(results.values())) == 4

    # the demo style has a source generator too (base/generator); attribute-less styles without one refuse
    bad = post_photo(client, "obama.jpg", style="toontiny", structure=9)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    bad = post_photo(client, "obama.jpg", style="toontiny", strength=1.5)
    assert bad.status_code == 422


def test_a_style_whose_encoder_is_missing_is_not_served(make_client, installed_data_dir: Path, tmp_path: Path) -> None:
    import shutil

    from tests.service.conftest import OPERATOR_KEY, auth, post_photo

    data = tmp_path / "data"
    shutil.copytree(installed_data_dir / "registry", data / "registry")
    shutil.rmtree(data / "registry" / "encoders")
    client = make_client(data_dir=data)
    listed = client.get("/v1/styles", headers=auth(OPERATOR_KEY)).json()["styles"]
    assert {s["id"]: s["status"] for s in listed}["toontiny"] == "missing_encoder"
    refused = post_photo(client, "obama.jpg", style="toontiny")
    assert refused.status_code == 409 and refused.json()["code"] == "style_not_ready"
    assert "facestylor-tiny" in refused.json()["message"]


def test_a_style_paired_with_the_wrong_encoder_is_refused_clearly(
    make_client, make_settings, start_worker, installed_data_dir: Path, tmp_path: Path
) -> None:
    """style.json naming another encoder (here the demo's) than the one whose mapping the style's source
    generator has: the job fails with a clear message instead of rendering meaningless codes."""
    import json
    import shutil

    from tests.service.conftest import post_photo, wait_for

    data = tmp_path / "data"
    shutil.copytree(installed_data_dir / "registry", data / "registry")
    meta_path = data / "registry" / "styles" / "toontiny" / "style.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "encoder": "base"}))
    client = make_client(data_dir=data)
    start_worker(make_settings(data_dir=data), queues="stylize")
    job = post_photo(client, "obama.jpg", style="toontiny", size=256).json()
    done = wait_for(client, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "style_unavailable"
    assert "its own encoder" in done["error"]["message"]


@pytest.mark.parametrize("network", ["silent server", "unroutable address"])
def test_the_first_run_falls_back_to_the_demo_in_bounded_time(network: str, tmp_path: Path, capsys) -> None:
    """`make run` on a dead network: a server that accepts connections and never answers, or an
    address nothing routes to. The first run gives up within its timeouts, says so in one line and
    leaves nothing half-imported."""
    import socket
    import time

    from service.platform.settings import Settings
    from workers.launcher.first_run import first_run_style

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nobody ever reads or answers
        mirror = f"http://127.0.0.1:{silent.getsockname()[1]}" if network == "silent server" else "http://10.255.255.1"
        settings = Settings(data_dir=tmp_path / "data", download_mirror=mirror, download_timeout_s=1.0)
        registry = Registry(settings.registry_dir)
        started = time.monotonic()
        assert first_run_style(settings, registry) == "demo"
        elapsed = time.monotonic() - started
    assert elapsed < 8.0, elapsed  # a few timeouts of 1 s, never a hang
    out = capsys.readouterr().out
    assert "serving the offline demo style 'demo' instead" in out
    assert registry.style("toonify") is None
    for folder in ("styles", "encoders"):
        assert not (settings.registry_dir / folder).exists() or not list((settings.registry_dir / folder).iterdir())
