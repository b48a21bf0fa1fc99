"""`agilegan stylize` (models/cli/stylize.py): a photo's face, or every face of a group photo, through a
style on this machine, with the tiny demo registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.cli import agilegan
from tests.exemplar_data import FACES


def test_the_stylize_command_does_one_face_or_every_face(tiny_registry: Path, tmp_path: Path) -> None:
    photo = FACES / "two_people.jpg"
    common = ["stylize", tiny_registry / "styles" / "demo", photo, "--encoder", tiny_registry / "base" / "encoder"]
    one = agilegan(*common, "--out", tmp_path / "one.png")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["size"] == [64, 64] and len(json.loads(one.stdout)["faces"]) == 1
    group = agilegan(*common, "--faces", "all", "--output", "full", "--out", tmp_path / "all.png")
    assert group.returncode == 0, group.stderr
    report = json.loads(group.stdout)
    assert report["size"] == list(Image.open(photo).size) and len(report["faces"]) == 2
    before, after = np.asarray(Image.open(photo).convert("RGB"), np.int16), np.asarray(Image.open(tmp_path / "all.png"))
    for left, top, right, bottom in (f["box"] for f in report["faces"]):
        inner = (slice(top + 40, bottom - 40), slice(left + 40, right - 40))
        assert np.abs(after[inner] - before[inner]).mean() > 10
    assert np.array_equal(after[-100:], before[-100:])  # below both faces
    refused = agilegan(*common, "--faces", "all", "--out", tmp_path / "x.png")
    assert refused.returncode == 1 and "--output full" in refused.stderr
