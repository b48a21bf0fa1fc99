"""Our checkpoint directory format, the torch-free half: `config.json` and provenance.

A checkpoint is a directory holding `model.safetensors` (tensors only, no pickle) and `config.json`:

    {"format_version": 1, "class_name": "Generator", "config": {...}, "provenance": {...},
     "tensors_sha256": "...", "created_at": "..."}

This module never imports torch, so the API process can list the model registry cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"


class CheckpointError(Exception):
    """A checkpoint directory that cannot be read as the model asked for; the message says why."""


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a set of weights came from. `source` is a file name (never a full local path)."""

    source: str = "random-init"
    source_sha256: str | None = None
    license: str = "unknown: check the licence of the source weights before use"
    notes: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """The parsed `config.json` of a checkpoint directory."""

    directory: Path
    class_name: str
    config: dict[str, Any]
    provenance: Provenance
    format_version: int
    created_at: str
    tensors_sha256: str | None


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_info(directory: str | os.PathLike[str]) -> CheckpointInfo:
    """Parse and validate `config.json`; raises CheckpointError with the reason."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a checkpoint directory (no {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable JSON ({e})") from e
    version = data.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: missing integer format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} was written by a newer release (this one reads ≤ {FORMAT_VERSION})"
        )
    for field in ("class_name", "config"):
        if field not in data:
            raise CheckpointError(f"{path}: missing {field!r}")
    return CheckpointInfo(
        directory=directory,
        class_name=data["class_name"],
        config=data["config"],
        provenance=Provenance.from_dict(data.get("provenance", {})),
        format_version=version,
        created_at=data.get("created_at", ""),
        tensors_sha256=data.get("tensors_sha256"),
    )


def write_info(
    directory: Path, class_name: str, config: dict[str, Any], provenance: Provenance, tensors_sha256: str
) -> None:
    """Write `config.json` atomically (it is written last: its presence marks a complete checkpoint)."""
    data = {
        "format_version": FORMAT_VERSION,
        "class_name": class_name,
        "config": config,
        "provenance": provenance.to_dict(),
        "tensors_sha256": tensors_sha256,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    """Write via a temporary file in the same folder, fsync, rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


MAPPING_PREFIXES = {"Generator": "style.", "AttributeAwareGenerator": "style.", "Inverter": "mapping."}


def w_space_id(directory: str | os.PathLike[str]) -> str:
    """The fingerprint of the w space a checkpoint's mapping network defines: sha256 (first 16 hex) of
    the mapping's tensors (names without their prefix, dtypes, shapes, bytes), read straight from the
    safetensors file. A generator and the encoder that shares its mapping (`Inverter.mapping` ←
    `Generator.style`) get the same id; latent directions are tied to it (models/inference/directions.py)."""
    info = read_info(directory)
    prefix = MAPPING_PREFIXES.get(info.class_name)
    if prefix is None:
        raise CheckpointError(f"{directory}: a {info.class_name} has no mapping network (no w space)")
    path = Path(directory) / TENSORS_FILE
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
            start = 8 + size
            names = sorted(k for k in header if k.startswith(prefix))
            if not names:
                raise CheckpointError(f"{path}: no {prefix}* tensors")
            for name in names:
                entry = header[name]
                a, b = entry["data_offsets"]
                f.seek(start + a)
                digest.update(f"{name[len(prefix) :]}|{entry['dtype']}|{entry['shape']}|".encode())
                digest.update(f.read(b - a))
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors ({e})") from e
    return digest.hexdigest()[:16]
