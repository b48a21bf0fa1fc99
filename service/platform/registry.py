"""The model registry on disk, read without torch (the API lists styles from it).

    <registry>/base/encoder/          Inverter checkpoint (HVAE encoder + FFHQ mapping): the default encoder
    <registry>/base/generator/        the source FFHQ generator (for training styles)
    <registry>/base/attribute-classifier/  optional: picks the branch for attribute=auto
    <registry>/encoders/<id>/         more encoders (e.g. FaceStylor's), each with its source generator in source/
    <registry>/styles/<id>/           a style: generator checkpoint + style.json
    <registry>/directions/<name>.npz  latent directions for editing (models/inference/directions.py), by w space

`style.json`: {"id", "name", "description", "status": "ready" | "training" | …, "created_at", "labels"}, and
optionally "encoder" (an id under encoders/; absent = base/encoder), "source" (registry-relative directory
of the generator the style was fine-tuned from; absent = base/generator) and "structure" (the default
layer swap). A style is served only through its own encoder: codes of another encoder's mapping are
meaningless to it.

With a remote object store (several machines) the record of a style is in Redis
(service/platform/style_records.py), which every host reads; style.json is written beside the weights of the
host that has them, and travels in the style's bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.platform.contract import STYLE_ID, StyleState
from service.platform.style_records import StyleRecords
from service.portrait.checkpoint_files import CheckpointError, atomic_write_bytes, read_info, w_space_id

STYLE_FILE = "style.json"
BASE_ENCODER = "base"
STRENGTH_STEP = 0.05  # strengths are quantised to this (models.inference.style_strength.STRENGTH_STEP)


@dataclass(frozen=True)
class StyleInfo:
    id: str
    name: str
    description: str
    status: str
    resolution: int | None
    branches: list[str]
    default_branch: str | None
    model_class: str | None
    provenance: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    labels: list[str] = field(default_factory=list)
    training: dict[str, Any] | None = None  # summary once trained (steps, best score, stop reason)
    error: dict[str, Any] | None = None  # code and message when training failed
    encoder: str = BASE_ENCODER  # "base" or an id under encoders/
    source: str | None = None  # registry-relative source generator directory, when it exists
    structure_default: int = 0

    @property
    def controls(self) -> dict[str, Any] | None:
        """The style-strength controls this style offers (None: no source generator, or attribute-aware)."""
        if self.source is None or self.branches or self.resolution is None:
            return None
        return {
            "structure": {"default": self.structure_default, "min": 0, "max": self.resolution.bit_length() - 3},
            "strength": {"default": 1.0, "min": 0.0, "max": 1.0, "step": STRENGTH_STEP},
        }

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "resolution": self.resolution,
            "attribute_branches": self.branches,
            "default_branch": self.default_branch,
            "model_class": self.model_class,
            "provenance": self.provenance,
            "created_at": self.created_at,
            "labels": self.labels,
            "training": self.training,
            "error": self.error,
            "encoder": self.encoder,
            "controls": self.controls,
        }


SHARED_STATES = (StyleState.READY, StyleState.RETIRED)  # a style bundle's states (it has weights to share)


class Registry:
    def __init__(self, root: Path, records: StyleRecords | None = None) -> None:
        """`records`: the style records in Redis (a deployment on several machines); None: style.json files."""
        self.root = Path(root)
        self.records = records
        self._w_spaces: dict[Path, tuple[tuple[int, int], str]] = {}

    @property
    def encoder_dir(self) -> Path:
        return self.root / "base" / "encoder"

    @property
    def attribute_classifier_dir(self) -> Path:
        return self.root / "base" / "attribute-classifier"

    @property
    def source_generator_dir(self) -> Path:
        return self.root / "base" / "generator"

    @property
    def lpips_dir(self) -> Path:
        """LPIPS-VGG for the consistency term of style training (`agilegan lpips install`)."""
        return self.root / "base" / "lpips"

    def encoder_dir_for(self, encoder: str) -> Path:
        """The Inverter checkpoint of `encoder` ("base" or an id under encoders/)."""
        if encoder == BASE_ENCODER:
            return self.encoder_dir
        if not STYLE_ID.fullmatch(encoder):
            raise ValueError(f"not an encoder id: {encoder!r}")
        return self.root / "encoders" / encoder

    def has_encoder(self, encoder: str) -> bool:
        try:
            return (self.encoder_dir_for(encoder) / "config.json").is_file()
        except ValueError:
            return False

    def style_dir(self, style_id: str) -> Path:
        if not STYLE_ID.fullmatch(style_id):
            raise ValueError(f"not a style id: {style_id!r}")
        return self.root / "styles" / style_id

    def preview_path(self, style_id: str) -> Path:
        """The style's preview grid (fixed portraits over their stylized renders), drawn while it trains."""
        return self.style_dir(style_id) / "preview.png"

    def has_base(self) -> bool:
        return (self.encoder_dir / "config.json").is_file()

    def styles(self) -> list[StyleInfo]:
        folder = self.root / "styles"
        on_disk = sorted(p.name for p in folder.iterdir() if STYLE_ID.fullmatch(p.name)) if folder.is_dir() else []
        records = self.records.all() if self.records is not None else {}
        found = (self._info(i, records.get(i) or self._disk_meta(i)) for i in sorted({*on_disk, *records}))
        return [s for s in found if s is not None]

    def style(self, style_id: str) -> StyleInfo | None:
        if not STYLE_ID.fullmatch(style_id):
            return None
        return self._info(style_id, self._meta(style_id))

    def _meta(self, style_id: str) -> dict[str, Any] | None:
        """The style's record: Redis first (several machines), else its style.json."""
        record = self.records.get(style_id) if self.records is not None else None
        return record if record is not None else self._disk_meta(style_id)

    def _disk_meta(self, style_id: str) -> dict[str, Any] | None:
        try:
            meta = json.loads((self.root / "styles" / style_id / STYLE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        if self.records is not None and meta.get("status", StyleState.READY) not in SHARED_STATES:
            return None  # with records, an unrecorded style in training is a leftover of a crashed host
        return meta

    def _info(self, style_id: str, meta: dict[str, Any] | None) -> StyleInfo | None:
        if meta is None:
            return None
        directory = self.root / "styles" / style_id
        resolution, branches, default, cls, provenance = None, [], None, None, {}
        try:
            info = read_info(directory)
            cls, provenance = info.class_name, info.provenance.to_dict()
            config = info.config.get("generator", info.config)
            resolution = config.get("size")
            branches = list(info.config.get("branches", []))
            default = info.config.get("default_branch")
        except CheckpointError:
            pass  # e.g. still training: no weights yet
        source = meta.get("source", "base/generator")
        source_ok = isinstance(source, str) and ".." not in source and (self.root / source / "config.json").is_file()
        encoder = meta.get("encoder", BASE_ENCODER)
        status = meta.get("status", StyleState.READY if cls else StyleState.PENDING)
        if status == StyleState.READY and not self.has_encoder(encoder):
            status = StyleState.MISSING_ENCODER
        return StyleInfo(
            id=style_id,
            name=meta.get("name", style_id),
            description=meta.get("description", ""),
            status=status,
            resolution=resolution,
            branches=branches,
            default_branch=default,
            model_class=cls,
            provenance=provenance,
            created_at=meta.get("created_at", ""),
            labels=list(meta.get("labels", [])),
            training=meta.get("training"),
            error=meta.get("error"),
            encoder=encoder,
            source=source if source_ok else None,
            structure_default=int(meta.get("structure", 0)),
        )

    def remove_style(self, style_id: str) -> None:
        """Delete a style that never became servable (canceled or failed), freeing its name. Renamed
        aside first, so a reader never sees half a directory."""
        if self.records is not None:
            self.records.delete(style_id)
        folder = self.style_dir(style_id)
        if folder.exists():
            doomed = folder.with_name(f".removed-{style_id}-{uuid.uuid4().hex[:8]}")
            os.replace(folder, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def read_style_meta(self, style_id: str) -> dict[str, Any]:
        """The style's record; FileNotFoundError when it has none."""
        meta = self._meta(self.style_dir(style_id).name)
        if meta is None:
            raise FileNotFoundError(f"no style {style_id!r}")
        return meta

    def update_style_meta(self, style_id: str, **changes: Any) -> None:
        """Change some fields of style.json (status, error, …), keeping the others."""
        meta = self.read_style_meta(style_id)
        meta.pop("id", None)
        self.write_style_meta(style_id, {**meta, **changes})

    def write_style_meta(
        self, style_id: str, meta: dict[str, Any], before_record: Callable[[], None] | None = None
    ) -> None:
        """style.json where this host has the style's folder (always, on one machine), then
        `before_record()` (e.g. publishing the bundle that file is part of), then the record in Redis
        (several machines): a host that reads the record finds what it says."""
        directory = self.style_dir(style_id)
        if self.records is None or directory.is_dir():
            self.write_style_meta_in(directory, style_id, meta)
        if before_record is not None:
            before_record()
        if self.records is not None:
            self.records.put(style_id, {k: v for k, v in meta.items() if k != "id"})

    @staticmethod
    def write_style_meta_in(directory: Path, style_id: str, meta: dict[str, Any]) -> None:
        """style.json into `directory` (a style's folder, or a temporary one renamed into place later)."""
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / STYLE_FILE, (json.dumps({"id": style_id, **meta}, indent=2) + "\n").encode())

    # ------------------------------------------------------------------------------- directions

    @property
    def directions_dir(self) -> Path:
        return self.root / "directions"

    def direction_path(self, name: str) -> Path:
        if not STYLE_ID.fullmatch(name):
            raise ValueError(f"not a direction name: {name!r}")
        return self.directions_dir / f"{name}.npz"

    def directions(self) -> list[dict[str, Any]]:
        """Every readable direction file's metadata, with `id` (its file name without .npz)."""
        if not self.directions_dir.is_dir():
            return []
        found = (self.direction(p.stem) for p in sorted(self.directions_dir.glob("*.npz")))
        return [d for d in found if d is not None]

    def direction(self, name: str) -> dict[str, Any] | None:
        """A direction set's metadata (the `meta` of its .npz, read without the arrays), or None."""
        try:
            path = self.direction_path(name)
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
        except (ValueError, OSError, KeyError):
            return None
        return {"id": name, **meta}

    def w_space(self, encoder: str) -> str | None:
        """The w-space fingerprint of an encoder's mapping (what its codes mean), cached by file stamp;
        None when the encoder cannot be read."""
        try:
            directory = self.encoder_dir_for(encoder)
            stat = (directory / "model.safetensors").stat()
        except (ValueError, OSError):
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._w_spaces.get(directory)
        if cached is None or cached[0] != stamp:
            try:
                cached = (stamp, w_space_id(directory))
            except CheckpointError:
                return None
            self._w_spaces[directory] = cached
        return cached[1]
