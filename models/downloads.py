"""Downloading public weights: resumable, checksum-verified, then imported into the registry.

Torch-free (the import step calls `models.importers` lazily). A download goes to `<dest>.part`; an
interrupted one resumes with an HTTP Range request; the file is renamed into place only after its
sha256 matches the release's (the full digest, or the 8-hex prefix that OpenMMLab puts in its file
names, which is all that is published for those). A mismatch deletes the partial file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
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
    format: str  # an importer format (models.importers.FORMATS)
    registry_path: str  # where it goes under the registry, e.g. "base/generator"
    license: str
    description: str


# Public releases we know the address and (prefix) checksum of. The official AgileGAN weights are on
# Google Drive folders (no stable direct URL): download them by hand and use `agilegan weights import`.
CATALOG: dict[str, Release] = {
    r.name: r
    for r in (
        Release(
            name="ffhq-1024-mmgen",
            url="https://download.openmmlab.com/mmgen/stylegan2/stylegan2_c2_ffhq_1024_b4x8_20210407_150045-618c9024.pth",
            sha256="618c9024",
            format="mmgen",
            registry_path="base/generator",
            license="OpenMMLab release of a StyleGAN2 trained on FFHQ (FFHQ: CC BY-NC-SA 4.0). Non-commercial.",
            description="StyleGAN2 config-f FFHQ 1024, trained by MMGeneration (FID50k 2.82); the source "
            "generator for style training.",
        ),
        Release(
            name="ffhq-256-mmgen",
            url="https://download.openmmlab.com/mmgen/stylegan2/stylegan2_c2_ffhq_256_b4x8_20210407_160709-7890ae1f.pth",
            sha256="7890ae1f",
            format="mmgen",
            registry_path="base/generator-256",
            license="OpenMMLab release of a StyleGAN2 trained on FFHQ (FFHQ: CC BY-NC-SA 4.0). Non-commercial.",
            description="StyleGAN2 config-f FFHQ 256 (FID50k 3.99): a fast source generator for 256 px styles.",
        ),
    )
}


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
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
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
    from models.importers import import_weights

    file_name = release.url.rsplit("/", 1)[-1] or f"{release.name}.pt"
    local = download(release.url, Path(cache_dir) / file_name, release.sha256, **kwargs)  # type: ignore[arg-type]
    target = Path(registry_dir) / release.registry_path
    import_weights(release.format, local, target)
    return target
