"""The worker's FFHQ crop at the default transform size is the reference's transform-4096 crop to within
45 dB PSNR (issue 24): on the test portraits and on two photos upscaled until the face is larger than
the crop (where supersampling would matter most). The reference's 4096 costs ~1 s per crop on this CPU;
bench/worker_cpu.py measures both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from service.platform.contract import ALIGNED_SIZE
from service.platform.settings import Settings
from service.portrait.configs import AlignerConfig
from service.portrait.media.alignment import FaceAligner, align_landmarks
from service.portrait.media.images import load_image

FACES = Path(__file__).parents[1] / "data" / "faces"
CASES = [("astronaut", 1.0), ("obama.jpg", 1.0), ("biden.jpg", 1.0), ("alex-lacamoire.png", 1.0)]
CASES += [("obama.jpg", 2.5), ("alex-lacamoire.png", 3.0)]  # faces of ~1000-1300 px


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(AlignerConfig())


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}-x{s:g}" for n, s in CASES])
def test_the_default_crop_matches_the_supersampled_reference(aligner: FaceAligner, name: str, scale: float) -> None:
    image = Image.fromarray(skdata.astronaut()) if name == "astronaut" else load_image(FACES / name).image
    landmarks = aligner.detect(image)[0].landmarks
    if scale != 1.0:
        size = (round(image.size[0] * scale), round(image.size[1] * scale))
        image, landmarks = image.resize(size, Image.Resampling.LANCZOS), landmarks * scale
    default = Settings().align_transform_size
    assert default < 4096  # the supersampled reference is what this setting saves
    served = align_landmarks(image, landmarks, ALIGNED_SIZE, default)
    reference = align_landmarks(image, landmarks, ALIGNED_SIZE, 4096)
    assert served.face.size > 700 or scale == 1.0  # the upscaled cases are large faces indeed
    assert psnr(served.image, reference.image) >= 45.0
