"""The model registry across machines (issue 27): each host's registry directory is a local cache of the
bundles published to the object store.

A bundle is one folder of the registry: a style (`styles/<id>`), an encoder (`encoders/<id>`), the base
networks (`base/encoder`, `base/generator`). Publishing uploads its files under a fresh version,
`registry/<folder>/<version>/<name>`, then its manifest `registry/<folder>.json` (the version, and each
file's size and SHA-256) last: readers start from the manifest, so a half-uploaded bundle is never seen,
and a re-publish never changes the files a reader is fetching. The old version's files go after the new
manifest is up. Retiring deletes the manifest first.

`pull` makes the local cache match the manifests under a prefix. A bundle whose manifest version differs
from the local one is downloaded into a scratch folder beside it, every file checked against its size
and SHA-256, then swapped in by rename; a file that does not match is refused and the local copy stays.
A local bundle whose manifest has gone (retired on another machine) is removed. The version each local
bundle came from, and which store it came from, is kept in `<registry>/.bundles/`, outside the bundle
folders: a registry pointed at another store (bucket, prefix) treats its bundles as its own, publishes
them there and never deletes them for being absent from it.

Every host pulls every few seconds, so a pass that finds nothing new costs one listing, not a GET per
bundle: the marker keeps the manifest's tag as the listing showed it (S3's ETag), and a manifest whose
tag is unchanged is not read again. A miss for one style (`pull_folder`) reads that style's manifest
alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from service.platform.contract import StyleState
from service.platform.objectstore import ObjectMissing, ObjectStore
from service.platform.registry import Registry
from service.portrait.checkpoint_files import atomic_write_bytes

log = logging.getLogger("agilegan.registry")
PREFIX = "registry/"


class BundleRefused(Exception):
    """A downloaded file did not match its manifest (size or SHA-256): the bundle is not installed."""


@dataclass
class PullReport:
    fetched: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _check_folder(folder: str) -> str:
    parts = folder.strip("/").split("/")
    if len(parts) != 2 or any(not p or p.startswith(".") or p == ".." for p in parts):
        raise ValueError(f"not a registry bundle: {folder!r}")
    return "/".join(parts)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def _marker(root: Path, folder: str) -> Path:
    return root / ".bundles" / (folder.replace("/", "__") + ".json")


def local_version(root: Path, folder: str, store: ObjectStore | None = None) -> str | None:
    """The version of the store's bundle that the local folder holds; None when it did not come from the
    store (installed here, or from another store: `store` given, its identity must match)."""
    return _read_marker(root, folder, store).get("version")


def _read_marker(root: Path, folder: str, store: ObjectStore | None = None) -> dict:
    """The local bundle's marker (version, store, manifest tag); {} when there is none, or when it names
    another store than `store`."""
    try:
        marker = json.loads(_marker(Path(root), folder).read_text())
    except (OSError, ValueError):
        return {}
    if store is not None and marker.get("store") != store.identity:
        return {}
    return marker


def publish(store: ObjectStore, root: Path, folder: str) -> str:
    """Upload the registry folder `folder` ("styles/toonify") as a new version; returns the version."""
    folder = _check_folder(folder)
    directory = Path(root) / folder
    version = uuid.uuid4().hex
    files = {}
    # 1. The files, under the new version.
    for path in _files(directory):
        name = path.relative_to(directory).as_posix()
        data = path.read_bytes()
        store.put(f"{PREFIX}{folder}/{version}/{name}", data)
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # 2. The manifest, last: from now on readers see this version.
    old = _remote_manifest(store, folder)
    store.put(f"{PREFIX}{folder}.json", json.dumps({"version": version, "files": files}).encode())
    _write_marker(store, root, folder, version)
    # 3. The previous version's files.
    if old is not None:
        store.delete_prefix(f"{PREFIX}{folder}/{old['version']}/")
    return version


def retire(store: ObjectStore, folder: str) -> None:
    """Unpublish: the manifest first (no reader starts on it any more), then the files."""
    folder = _check_folder(folder)
    store.delete(f"{PREFIX}{folder}.json")
    store.delete_prefix(f"{PREFIX}{folder}/")


def _remote_manifest(store: ObjectStore, folder: str) -> dict | None:
    try:
        return json.loads(store.get(f"{PREFIX}{folder}.json"))
    except ObjectMissing:
        return None


def _write_marker(store: ObjectStore, root: Path, folder: str, version: str, tag: str = "") -> None:
    """`tag`: the manifest's tag in the store's listing, when known (what `pull` compares to skip it)."""
    marker = _marker(Path(root), folder)
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(marker, json.dumps({"version": version, "store": store.identity, "tag": tag}).encode())


def pull(store: ObjectStore, root: Path, prefix: str = "styles/") -> PullReport:
    """Make the local bundles under `prefix` ("styles/") match the store's manifests: one listing, and a
    GET for each manifest whose tag changed since this host last read it."""
    root, report = Path(root), PullReport()
    remote = {}
    for info in store.list(f"{PREFIX}{prefix}"):
        rest = info.key[len(PREFIX) :]
        if rest.endswith(".json") and rest.count("/") == 1:
            remote[rest[: -len(".json")]] = info
    # 1. New or changed bundles.
    for folder in sorted(remote):
        tag = remote[folder].tag
        if tag and tag == _read_marker(root, folder, store).get("tag"):
            continue  # the manifest this host already read
        _update(store, root, folder, _remote_manifest(store, folder), tag, report)
    # 2. Bundles retired elsewhere (only those that came from this store: a marker says so).
    markers = root / ".bundles"
    for marker in sorted(markers.glob("*.json")) if markers.is_dir() else []:
        folder = marker.stem.replace("__", "/")
        if folder.startswith(prefix) and folder not in remote:
            _remove_retired(store, root, folder, report)
    return report


def pull_folder(store: ObjectStore, root: Path, folder: str) -> PullReport:
    """One bundle ("styles/<id>") made to match its manifest, with one GET when it is up to date: what a
    host does when a job asks for a style it does not have (a full `pull` lists every bundle)."""
    folder, root, report = _check_folder(folder), Path(root), PullReport()
    manifest = _remote_manifest(store, folder)
    if manifest is None:
        _remove_retired(store, root, folder, report)
    else:
        _update(store, root, folder, manifest, _read_marker(root, folder, store).get("tag", ""), report)
    return report


def _update(store: ObjectStore, root: Path, folder: str, manifest: dict | None, tag: str, report: PullReport) -> None:
    """Install `manifest`'s version of `folder` unless the local one is it; either way the marker keeps
    `tag`, so that an unchanged manifest is not read again."""
    if manifest is None:  # retired between the listing and the read
        return
    marker = _read_marker(root, folder, store)
    if manifest["version"] == marker.get("version"):
        if tag != marker.get("tag", ""):
            _write_marker(store, root, folder, manifest["version"], tag)
        return
    try:
        _install(store, root, folder, manifest, tag)
        report.fetched.append(folder)
    except (BundleRefused, ObjectMissing) as e:  # a re-publish raced us, or a corrupt object
        log.warning("bundle %s not installed: %s", folder, e)
        report.refused.append(folder)


def _remove_retired(store: ObjectStore, root: Path, folder: str, report: PullReport) -> None:
    """A local bundle whose manifest has gone: removed if it came from this store (a marker says so)."""
    if local_version(root, folder, store):
        shutil.rmtree(root / folder, ignore_errors=True)
        _marker(root, folder).unlink(missing_ok=True)
        report.removed.append(folder)


def _install(store: ObjectStore, root: Path, folder: str, manifest: dict, tag: str = "") -> None:
    """Download a bundle's version into scratch beside its folder, verify it, swap it in."""
    target = root / folder
    target.parent.mkdir(parents=True, exist_ok=True)
    incoming = target.parent / f".incoming-{uuid.uuid4().hex}"
    try:
        for name, expected in manifest["files"].items():
            if name.startswith("/") or ".." in name.split("/"):
                raise BundleRefused(f"{folder}: a file name leaves the bundle: {name!r}")
            data = store.get(f"{PREFIX}{folder}/{manifest['version']}/{name}")
            if len(data) != expected["size"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
                raise BundleRefused(f"{folder}/{name} does not match its manifest")
            path = incoming / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if target.exists():
            old = target.parent / f".old-{uuid.uuid4().hex}"
            os.replace(target, old)
            os.replace(incoming, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(incoming, target)
        _write_marker(store, root, folder, manifest["version"], tag)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


class RegistryMirror:
    """One host's side of the registry on a remote store (`store` None: a one-machine set-up, where
    every call does nothing): publish a style after a local change; pull what other hosts published,
    on a miss and every few seconds (`AGILEGAN_REGISTRY_SYNC_S`)."""

    PREFIXES = ("base/", "encoders/", "styles/")

    def __init__(self, store: ObjectStore | None, root: Path) -> None:
        self.store, self.root = store, Path(root)

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def publish_style(self, style_id: str) -> None:
        """After a change on this host (trained here, retired): a host without the style's folder has
        nothing to publish (the style's record in Redis already tells every host)."""
        if self.store is not None and (self.root / "styles" / style_id).is_dir():
            publish(self.store, self.root, f"styles/{style_id}")

    def publish_local(self) -> list[str]:
        """The bundles this host made itself (installed, or written by `make run`'s demo) and never
        published or pulled: the base networks, the encoders and the ready styles. A worker calls it at
        start, so a host that installs models shares them."""
        if self.store is None:
            return []
        registry, published = Registry(self.root), []
        for prefix in self.PREFIXES:
            base = self.root / prefix
            for folder in sorted(base.iterdir()) if base.is_dir() else []:
                name = f"{prefix}{folder.name}"
                if not folder.is_dir() or folder.name.startswith(".") or local_version(self.root, name, self.store):
                    continue
                if prefix == "styles/" and getattr(registry.style(folder.name), "status", None) != StyleState.READY:
                    continue  # training, failed, or not servable here: not a bundle to share
                publish(self.store, self.root, name)
                published.append(name)
        if published:
            log.info("published this host's registry bundles: %s", published)
        return published

    def pull_style(self, style_id: str) -> PullReport:
        """A job's style that this host lacks (or holds in another state): its bundle alone. An unreachable
        store is logged; the caller goes on with what it has."""
        if self.store is None:
            return PullReport()
        try:
            report = pull_folder(self.store, self.root, f"styles/{style_id}")
        except Exception as e:  # StoreUnavailable, mostly
            log.warning("pulling style %s failed: %s", style_id, e)
            return PullReport()
        if report.fetched or report.removed:
            log.info("registry pulled: %s", report)
        return report

    def pull(self) -> PullReport:
        """Every prefix; an unreachable store is logged and left for the next pass."""
        report = PullReport()
        if self.store is None:
            return report
        for prefix in self.PREFIXES:
            try:
                part = pull(self.store, self.root, prefix)
            except Exception as e:  # StoreUnavailable, mostly: the local copies keep serving
                log.warning("pulling the registry's %s failed: %s", prefix, e)
                continue
            report.fetched += part.fetched
            report.removed += part.removed
            report.refused += part.refused
        if report.fetched or report.removed:
            log.info("registry pulled: %s", report)
        return report
