"""Style exemplars: a folder or a zip of images, each FFHQ-aligned, with an optional attribute label.

The label of a file is its first-level folder (`female/a.png` → "female"); files at the top level are
unlabelled. Every file is reported accepted or rejected with a reason (the API returns that list).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from service.portrait.errors import InputError
from service.portrait.exemplar_files import IMAGE_SUFFIXES, label_of
from service.portrait.media.alignment import FaceAligner
from service.portrait.media.images import load_image


@dataclass
class ExemplarSet:
    images: torch.Tensor  # [N, 3, S, S] in [-1, 1]
    labels: list[str | None]
    names: list[str]
    report: list[dict] = field(default_factory=list)  # one {"file", "accepted", "reason"} per input file

    def __len__(self) -> int:
        return len(self.names)

    @property
    def branches(self) -> list[str]:
        return sorted({label for label in self.labels if label is not None})


def iter_files(source: Path) -> list[tuple[str, bytes]]:
    """(relative name, bytes) of every file in a folder or a zip (directories and dotfiles skipped)."""
    source = Path(source)
    if source.is_dir():
        return [
            (str(p.relative_to(source)), p.read_bytes())
            for p in sorted(source.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
        ]
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            return [
                (i.filename, z.read(i))
                for i in z.infolist()
                if not i.is_dir() and not any(p.startswith((".", "__MACOSX")) for p in PurePosixPath(i.filename).parts)
            ]
    raise FileNotFoundError(f"{source}: not a folder or a zip file")


def load_exemplars(
    files: list[tuple[str, bytes]], aligner: FaceAligner, size: int, max_pixels: int = 40_000_000
) -> ExemplarSet:
    """Align every file to `size` px; unreadable files and files without a usable face are rejected."""
    images, labels, names, report = [], [], [], []
    for name, data in files:
        if not name.lower().endswith(IMAGE_SUFFIXES):
            report.append({"file": name, "accepted": False, "reason": "not an image file (jpg, png, webp)"})
            continue
        try:
            photo = load_image(data, max_pixels).image
            crop = aligner.align(photo, output_size=size).image
        except InputError as e:
            report.append({"file": name, "accepted": False, "reason": e.code, "message": e.message})
            continue
        array = np.asarray(crop, dtype=np.float32) / 127.5 - 1.0
        images.append(torch.from_numpy(array).permute(2, 0, 1))
        labels.append(label_of(name))
        names.append(name)
        report.append({"file": name, "accepted": True, "label": label_of(name)})
    stacked = torch.stack(images) if images else torch.zeros(0, 3, size, size)
    return ExemplarSet(stacked, labels, names, report)


def tensor_exemplars(images: torch.Tensor, labels: list[str | None] | None = None) -> ExemplarSet:
    """An exemplar set from ready-made aligned tensors (tests, synthetic data)."""
    n = images.shape[0]
    return ExemplarSet(images, labels or [None] * n, [f"exemplar-{i}" for i in range(n)])
