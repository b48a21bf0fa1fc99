"""A made group photo for the `faces=all` tests: five faces of the test portraits at different sizes on a
textured background (so an untouched pixel is a checkable claim), two of them close enough that their crop
squares overlap, and one too small for the service's default `min_face_size` (128)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FACES = Path(__file__).parent / "data" / "faces"

# (source photo, its face box (left, top, right, bottom) as dlib finds it, target box width, where its box goes)
HEADS = [
    ("obama.jpg", (378, 158, 625, 405), 200, (150, 260)),
    ("biden.jpg", (433, 211, 766, 545), 150, (395, 300)),  # beside obama: their crop squares overlap
    ("alex-lacamoire.png", (184, 150, 339, 305), 120, (760, 200)),
    ("two_people.jpg", (240, 52, 410, 222), 110, (1000, 380)),
    ("obama.jpg", (378, 158, 625, 405), 72, (1120, 120)),  # found, but under 128 px across: skipped
]
STYLIZED = 4  # faces of the default minimum size or more


def group_photo(size: tuple[int, int] = (1280, 720), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[: size[1], : size[0]]
    base = np.stack([90 + 60 * xs / size[0], 110 + 50 * ys / size[1], 140 - 40 * xs / size[0]], -1)
    canvas = Image.fromarray(np.uint8(np.clip(base + rng.normal(0, 6, base.shape), 0, 255)))
    for name, (left, top, right, bottom), width, (x, y) in HEADS:
        source = Image.open(FACES / name).convert("RGB")
        margin = 0.45 * (right - left)  # the head and some hair around the detector's box
        head = source.crop((int(left - margin), int(top - margin), int(right + margin), int(bottom + margin)))
        scale = width / (right - left)
        head = head.resize((round(head.size[0] * scale), round(head.size[1] * scale)), Image.Resampling.LANCZOS)
        canvas.paste(head, (x - round(margin * scale), y - round(margin * scale)))
    return canvas
