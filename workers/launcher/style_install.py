"""`agilegan styles install NAME`: a ready public style in one command.

Downloads what is missing (the style's generator and the encoder it pairs with: resumable,
checksum-verified, from the release's origin or a mirror), imports both, and registers the style with
its encoder pairing, source generator and default structure. Each import is written to a hidden
temporary directory of the registry and renamed into place only when complete, so an interruption
never leaves a half-imported style or encoder behind. Installing an installed style does nothing.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.weights.downloads import CATALOG, LPIPS_FILES, STYLE_PRESETS, Release, StylePreset, download, mirrored
from service.platform.contract import StyleState
from service.platform.registry import Registry
from service.platform.settings import Settings

log = logging.getLogger("agilegan.install")

Progress = Callable[[str, int, int | None], None]  # (file name, bytes done, total or None)


class InstallError(Exception):
    """A style that could not be installed; the message says why (the registry is unchanged)."""


@dataclass(frozen=True)
class Installed:
    style: str
    encoder: str
    changed: bool  # False: it was already installed
    downloaded: list[str]


def encoder_id(release: Release) -> str:
    """The registry id of an encoder release ("encoders/<id>")."""
    return release.registry_path.removeprefix("encoders/")


def install_style(
    name: str,
    registry_dir: Path,
    cache_dir: Path,
    mirror: str | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
    catalog: dict[str, Release] | None = None,
    presets: dict[str, StylePreset] | None = None,
) -> Installed:
    """Install the preset `name` (see `STYLE_PRESETS`); `catalog`/`presets` default to the public ones."""
    catalog = CATALOG if catalog is None else catalog
    presets = STYLE_PRESETS if presets is None else presets
    if name not in presets:
        raise InstallError(f"unknown style {name!r}; one of: {', '.join(sorted(presets))}")
    preset = presets[name]
    registry = Registry(registry_dir)
    style_rel, encoder_rel = mirrored(catalog[preset.release], mirror), mirrored(catalog[preset.encoder], mirror)
    enc_id = encoder_id(encoder_rel)
    existing = registry.style(name)
    if existing is not None and existing.status == StyleState.READY and existing.encoder == enc_id:
        return Installed(name, enc_id, False, [])
    if existing is not None and existing.provenance.get("source") != style_rel.file_name:
        raise InstallError(f"a different style {name!r} is already in the registry; retire it first")
    downloaded: list[str] = []
    fetch = _fetcher(cache_dir, timeout, progress, downloaded)

    # 1. The encoder (with its source generator), unless the registry has it.
    if not registry.has_encoder(enc_id):
        _import_atomically(encoder_rel.format, fetch(encoder_rel), registry.encoder_dir_for(enc_id))
    # 2. The style's generator and its style.json, together.
    style_file = fetch(style_rel)
    meta = {
        "name": preset.title,
        "description": f"{preset.description}. {style_rel.description}",
        "status": StyleState.READY,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "labels": ["facestylor", "public"],
        "encoder": enc_id,
        "source": f"encoders/{enc_id}/source",
        "structure": preset.structure,
        "license": style_rel.license,
    }
    _import_atomically(style_rel.format, style_file, registry.style_dir(name), meta)
    return Installed(name, enc_id, True, downloaded)


def install_lpips(
    registry_dir: Path,
    cache_dir: Path,
    mirror: str | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
    files: tuple[Release, Release] | None = None,
) -> bool:
    """Download the LPIPS heads and torchvision's VGG16 (resumable, checksum-verified; `files` default to
    the public releases) and import them as one LPIPS checkpoint in `base/lpips`, atomically; False when
    it is installed already."""
    dest = Registry(registry_dir).lpips_dir
    if (dest / "config.json").is_file():
        return False
    heads, vgg = (mirrored(f, mirror) for f in files or LPIPS_FILES)
    fetch = _fetcher(cache_dir, timeout, progress, [])
    _import_atomically(heads.format, fetch(heads), dest, vgg=fetch(vgg))
    return True


def lpips_for_training(settings: Settings) -> bool:
    """A train worker's start: LPIPS-VGG installed when the registry lacks it and AGILEGAN_TRAIN_LPIPS=auto
    (bounded by the download timeout), so that style training's consistency term is LPIPS. True when it is
    installed now; a failure (offline, say) is logged, and training uses source-discriminator features."""
    if settings.train_lpips != "auto":
        return False
    try:
        return install_lpips(
            settings.registry_dir,
            settings.data_dir / "downloads",
            mirror=settings.download_mirror,
            timeout=settings.download_timeout_s,
        )
    except InstallError as e:
        log.warning("LPIPS-VGG could not be installed (%s): training uses source-discriminator features", e)
        return False


def _fetcher(
    cache_dir: Path, timeout: float, progress: Progress | None, downloaded: list[str]
) -> Callable[[Release], Path]:
    """download() of a release into the cache, its errors as InstallError; names fetched go to `downloaded`."""

    def fetch(release: Release) -> Path:
        path = Path(cache_dir) / release.file_name
        if not path.is_file():
            downloaded.append(release.file_name)
        report = (lambda done, total: progress(release.file_name, done, total)) if progress else None
        try:
            return download(release.url, path, release.sha256, timeout=timeout, progress=report)
        except Exception as e:  # DownloadError and friends: the message is the user's answer
            raise InstallError(str(e)) from e

    return fetch


def _import_atomically(
    fmt: str, src: Path, dest: Path, style_meta: dict | None = None, vgg: Path | None = None
) -> None:
    """Import `src` into a hidden sibling of `dest`, then rename it into place."""
    from models.weights.importers import ImportFailure, import_weights

    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            import_weights(fmt, src, tmp, vgg=vgg)
        except ImportFailure as e:
            raise InstallError(str(e)) from e
        if style_meta is not None:
            Registry.write_style_meta_in(tmp, dest.name, style_meta)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
