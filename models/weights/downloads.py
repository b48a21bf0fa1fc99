"""Downloading public weights: resumable, checksum-verified, then imported into the registry.

Torch-free (the import step calls `models.weights.importers` lazily). A download goes to `<dest>.part`; an
interrupted one resumes with an HTTP Range request; the file is renamed into place only after its
sha256 matches the release's (the full digest, or the 8-hex prefix that OpenMMLab puts in its file
names, which is all that is published for those). A mismatch deletes the partial file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class DownloadError(Exception):
    """A download that failed or did not match its checksum; the message says which."""


@dataclass(frozen=True)
class Release:
    name: str
    url: str
    sha256: str  # full hex digest, or a prefix of at least 8 hex characters
    format: str  # an importer format (models.weights.importers.FORMATS)
    registry_path: str  # where it goes under the registry, e.g. "base/generator"
    license: str
    description: str
    approx_mb: int = 0  # the file's size, about (from the checkpoint's key manifest); 0 = unknown

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1] or f"{self.name}.pth"


@dataclass(frozen=True)
class StylePreset:
    """A ready style of the catalog: its generator release, the encoder it pairs with, its defaults."""

    name: str  # the style id it installs as
    title: str
    release: str  # a CATALOG name (facestylor-transfer)
    encoder: str  # a CATALOG name (facestylor-encoder) — the encoder whose FFHQ decoder it was tuned from
    structure: int  # FaceStylor's default layer swap (quick_try `_swap_layer`)
    description: str


OPENMMLAB = "https://download.openmmlab.com/mmgen/"
NC_FFHQ = "FFHQ is CC BY-NC-SA 4.0: non-commercial use only."
FACESTYLOR = "OpenMMLab MMGEN-FaceStylor release (code Apache-2.0). "


def _gan(name: str, path: str, fmt: str, to: str, mb: int, license: str, description: str) -> Release:
    sha = path.rsplit("-", 1)[-1].removesuffix(".pth")  # OpenMMLab names end in -<sha256[:8]>.pth
    return Release(name, OPENMMLAB + path, sha, fmt, to, license, description, mb)


# Public releases we know the address and (prefix) checksum of (FaceStylor's README and
# demo/quick_try.py). The official AgileGAN weights are on Google Drive folders (no stable direct URL):
# download them by hand and use `agilegan weights import`.
_RELEASES = (
    _gan(
        "ffhq-1024-mmgen",
        "stylegan2/stylegan2_c2_ffhq_1024_b4x8_20210407_150045-618c9024.pth",
        "mmgen",
        "base/generator",
        0,
        "OpenMMLab release of a StyleGAN2 trained on FFHQ. " + NC_FFHQ,
        "StyleGAN2 config-f FFHQ 1024, trained by MMGeneration (FID50k 2.82); the source generator for style training.",
    ),
    _gan(
        "ffhq-256-mmgen",
        "stylegan2/stylegan2_c2_ffhq_256_b4x8_20210407_160709-7890ae1f.pth",
        "mmgen",
        "base/generator-256",
        0,
        "OpenMMLab release of a StyleGAN2 trained on FFHQ. " + NC_FFHQ,
        "StyleGAN2 config-f FFHQ 256 (FID50k 3.99): a fast source generator for 256 px styles.",
    ),
    _gan(
        "facestylor-encoder-1024",
        "agilegan/agile_encoder_ffhq1024x1024_lr_1e-4_500kiter_20211201_112111-fb1312dc.pth",
        "facestylor-encoder",
        "encoders/facestylor-1024",
        1388,
        FACESTYLOR + "Trained on FFHQ with MMGen's FFHQ StyleGAN2. " + NC_FFHQ,
        "AgileGAN-style encoder (IR-SE50, 18 codes, mu only) with MMGen's FFHQ 1024 generator as its "
        "decoder: the encoder and source of the 1024 styles (toonify, oil, sketch).",
    ),
    _gan(
        "facestylor-encoder-256",
        "agilegan/agile_encoder_celebahq256x256_lr_1e-4_150k_20211104_134520-9cce67da.pth",
        "facestylor-encoder",
        "encoders/facestylor-256",
        1376,
        FACESTYLOR + "Trained on CelebA-HQ (non-commercial research) with MMGen's FFHQ 256 StyleGAN2. " + NC_FFHQ,
        "AgileGAN-style encoder with MMGen's FFHQ 256 generator as its decoder: the encoder and source of "
        "the 256 styles (cartoon, bitmoji, comic).",
    ),
    _gan(
        "facestylor-toonify",
        "agilegan/agile_transfer_toonify1024x1024_zplus_lpips0.5_freezeD5_ada_bs4x2_lr_1e-4_1600iter_"
        "20211104_134449-cb6785b6.pth",
        "facestylor-transfer",
        "styles/toonify",
        573,
        FACESTYLOR + "Fine-tuned on the Toonify dataset (Pinkney & Adler; research use). " + NC_FFHQ,
        "Toonify 1024: Pixar-like cartoon faces.",
    ),
    _gan(
        "facestylor-oil",
        "agilegan/agile_transfer_metfaces-oil1024x1024_zplus_lpips0.5_freezeD5_ada_bs4x2_lr_1e-4_1600iter_"
        "20211104_134350-2b99cb9b.pth",
        "facestylor-transfer",
        "styles/oil",
        573,
        FACESTYLOR + "Fine-tuned on MetFaces oil paintings (CC BY-NC 2.0). " + NC_FFHQ,
        "MetFaces oil painting 1024.",
    ),
    _gan(
        "facestylor-sketch",
        "agilegan/agile_transfer_metfaces-sketch1024x1024_zplus_lpips0.5_freezeD5_ada_bs4x2_lr_1e-4_1600iter_"
        "20211104_134426-081af2a2.pth",
        "facestylor-transfer",
        "styles/sketch",
        573,
        FACESTYLOR + "Fine-tuned on MetFaces sketches (CC BY-NC 2.0). " + NC_FFHQ,
        "MetFaces pencil sketch 1024.",
    ),
    _gan(
        "facestylor-cartoon",
        "agilegan/agile_transfer_photo2cartoon256x256_zplus_lpips0.5_freezeD5_ada_bs4x2_lr_1e-4_800_iter_"
        "20211201_140719-062c09fa.pth",
        "facestylor-transfer",
        "styles/cartoon",
        537,
        FACESTYLOR + "Fine-tuned on photo2cartoon (Kaggle; research use). " + NC_FFHQ,
        "photo2cartoon 256: flat-shaded cartoon portraits.",
    ),
    _gan(
        "facestylor-bitmoji",
        "agilegan/agile_transfer_bitmoji256x256_z_wolpips_freezeD3_ada_bs4x2_lr_1e-4_iter_1600_"
        "20211202_195819-9010a9fe.pth",
        "facestylor-transfer",
        "styles/bitmoji",
        478,  # no LPIPS in this run (the name says wolpips): an estimate from the 256 layout without it
        FACESTYLOR + "Fine-tuned on Bitmoji faces (Kaggle; Bitmoji is a Snap Inc. trademark). " + NC_FFHQ,
        "Bitmoji 256: avatar-style faces.",
    ),
    _gan(
        "facestylor-comic",
        "agilegan/agile_transfer_face2comics256x256_z_wolpips_freezeD3_ada_bs4x2_lr_1e-4_30kiter_best_fid_"
        "iter_15000_20211201_111145-4905b63a.pth",
        "facestylor-transfer",
        "styles/comic",
        478,
        FACESTYLOR + "Fine-tuned on face2comics v2 (Kaggle, synthetic). " + NC_FFHQ,
        "face2comics 256: comic-book faces.",
    ),
)
# LPIPS-VGG (the consistency term of style training, as FaceStylor trains with it): two files, imported
# together (`agilegan lpips install`; `agilegan weights import --format lpips-vgg HEADS --vgg VGG16`).
# The heads' digest is of the file in the lpips 0.1.4 wheel, equal to the repository's copy; torchvision
# names its files with the digest's first 8 hex characters.
LPIPS_HEADS = Release(
    "lpips-vgg-heads",
    "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/vgg.pth",
    "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "lpips-vgg",
    "base/lpips",
    "BSD-2-Clause (richzhang/PerceptualSimilarity).",
    "LPIPS v0.1 linear heads for VGG16 (7 kB); installed with torchvision-vgg16 by `agilegan lpips install`.",
)
LPIPS_VGG16 = Release(
    "torchvision-vgg16",
    "https://download.pytorch.org/models/vgg16-397923af.pth",
    "397923af",
    "lpips-vgg",
    "base/lpips",
    "torchvision (BSD-3-Clause); trained on ImageNet, whose terms allow non-commercial research use.",
    "VGG16 ImageNet weights: the LPIPS backbone; installed with lpips-vgg-heads by `agilegan lpips install`.",
    528,
)
LPIPS_FILES = (LPIPS_HEADS, LPIPS_VGG16)
CATALOG: dict[str, Release] = {r.name: r for r in (*_RELEASES, *LPIPS_FILES)}

STYLE_PRESETS: dict[str, StylePreset] = {
    p.name: p
    for p in (
        StylePreset("toonify", "Toonify", "facestylor-toonify", "facestylor-encoder-1024", 3, "Cartoon faces (1024)"),
        StylePreset("oil", "Oil painting", "facestylor-oil", "facestylor-encoder-1024", 2, "MetFaces oil (1024)"),
        StylePreset("sketch", "Sketch", "facestylor-sketch", "facestylor-encoder-1024", 1, "MetFaces sketch (1024)"),
        StylePreset("cartoon", "Cartoon", "facestylor-cartoon", "facestylor-encoder-256", 1, "photo2cartoon (256)"),
        StylePreset("bitmoji", "Bitmoji", "facestylor-bitmoji", "facestylor-encoder-256", 1, "Bitmoji (256)"),
        StylePreset("comic", "Comic", "facestylor-comic", "facestylor-encoder-256", 2, "face2comics (256)"),
    )
}


def mirrored(release: Release, mirror: str | None) -> Release:
    """The release fetched from `mirror` (a base URL holding the same file names) instead of its origin."""
    if not mirror:
        return release
    return dataclasses.replace(release, url=mirror.rstrip("/") + "/" + release.file_name)


def reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to `url`'s host opens within `timeout` seconds, name lookup included.

    Runs in a daemon thread: socket timeouts do not cover a hanging resolver, and a first run on a
    dead network must give up in bounded time.
    """
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def check_digest(path: Path, expected: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    actual = digest.hexdigest()
    expected = expected.lower()
    if len(expected) < 8 or not actual.startswith(expected):
        raise DownloadError(f"{path.name}: sha256 {actual} does not match the expected {expected}")
    return actual


def download(
    url: str,
    dest: Path,
    sha256: str,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
    chunk: int = 1 << 20,
) -> Path:
    """Fetch `url` to `dest` (resuming `dest.part`), verify sha256, rename into place; returns dest."""
    dest = Path(dest)
    if dest.is_file():
        check_digest(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    opened = False
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            opened = True
            if offset and response.status != 206:  # the server ignored the Range: start again
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with open(part, "ab" if offset else "wb") as f:
                done = offset
                while block := response.read(chunk):
                    f.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
            if total is not None and done < total:
                raise DownloadError(
                    f"{url}: download interrupted at {done} of {total} bytes; run the command again to resume"
                )
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # already complete
            pass
        else:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as e:
        if not opened:  # nothing was fetched: the host, not the transfer, is the problem
            host = urllib.parse.urlparse(url).netloc
            raise DownloadError(
                f"could not reach {host} ({getattr(e, 'reason', e)}): is this machine offline? Offline, copy "
                f"{dest.name} (sha256 {sha256[:16]}…) into {dest.parent}/ and run the command again, or point "
                "--mirror (AGILEGAN_DOWNLOAD_MIRROR) at a server on your network that has the release files"
            ) from e
        raise DownloadError(f"{url}: download interrupted ({e}); run the command again to resume") from e
    try:
        check_digest(part, sha256)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def fetch_release(release: Release, cache_dir: Path, registry_dir: Path, **kwargs: object) -> Path:
    """Download a release into `cache_dir` and import it into `registry_dir/<registry_path>`."""
    from models.weights.importers import import_weights

    local = download(release.url, Path(cache_dir) / release.file_name, release.sha256, **kwargs)  # type: ignore[arg-type]
    target = Path(registry_dir) / release.registry_path
    import_weights(release.format, local, target)
    return target
