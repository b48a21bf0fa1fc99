"""Face alignment speed: ms per photo for detection, landmarks and the FFHQ crop.

Usage:
    python bench/align.py [--runs 5]

Photos are the repository's test portrait (obama.jpg, 910×1137) resized to 0.5, 3 and 12 megapixels
(upscaled with bicubic, so the face grows with the photo). Detection runs on a copy downscaled to
`detect_max_side` (1024), landmarks at full resolution. Each figure is the median of --runs runs after
one warm-up; "decode" is the JPEG decode of the same photo (what an upload also costs).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from models.alignment import FaceAligner  # noqa: E402
from models.configs import AlignerConfig  # noqa: E402
from models.images import load_image  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces" / "obama.jpg"


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = load_image(PHOTO).image
    print(f"# median of {args.runs} runs; photo {PHOTO.name} resized; output 1024 px")
    header = (
        f"{'MP':>5}{'size':>12}{'transform':>10}{'decode':>9}{'detect':>9}{'landmarks':>11}{'align':>9}{'total':>9}"
    )
    print(header + "   (ms)")
    print("-" * len(header))
    for megapixels in (0.5, 3.0, 12.0):
        scale = (megapixels * 1e6 / (base.size[0] * base.size[1])) ** 0.5
        photo = base.resize((round(base.size[0] * scale), round(base.size[1] * scale)), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        photo.save(buf, format="JPEG", quality=90)
        jpeg = buf.getvalue()
        for transform in (1024, 4096):
            aligner = FaceAligner(AlignerConfig(transform_size=transform))
            decode = median_ms(lambda: load_image(jpeg), args.runs)  # noqa: B023
            boxes_scale = min(1.0, aligner.config.detect_max_side / max(photo.size))
            small = np.asarray(
                photo.resize(
                    (round(photo.size[0] * boxes_scale), round(photo.size[1] * boxes_scale)),
                    Image.Resampling.BILINEAR,
                    reducing_gap=2.0,
                )
            )
            detect = median_ms(lambda: aligner._detect_boxes(small), args.runs)  # noqa: B023
            total_detect = median_ms(lambda: aligner.detect(photo), args.runs)  # noqa: B023
            faces = aligner.detect(photo)
            align = median_ms(lambda: aligner.align_face(photo, faces[0]), args.runs)  # noqa: B023
            landmarks = max(total_detect - detect, 0.0)  # downscale + 68 points at full resolution
            total = total_detect + align
            print(
                f"{megapixels:>5}{f'{photo.size[0]}x{photo.size[1]}':>12}{transform:>10}{decode:>9.0f}"
                f"{detect:>9.0f}{landmarks:>11.0f}{align:>9.0f}{total:>9.0f}"
            )


if __name__ == "__main__":
    main()
