"""Face alignment speed: ms per photo for detection, landmarks and the FFHQ crop.

Usage:
    python bench/align.py [--runs 5]

Photos are the repository's test portrait (obama.jpg, 910×1137) resized to 0.5, 3 and 12 megapixels
(upscaled with bicubic, so the face grows with the photo). Detection runs on a copy downscaled to
`detect_max_side` (1024), landmarks at full resolution. Each figure is the median of --runs runs after
one warm-up. "detect" is detection + 68 landmarks as the service runs it (a fast HOG pass on a 640 px
copy, the full pass only when it finds nothing); "exhaustive" is the full pass alone (upsampled HOG on
a 1024 px copy, as `--all-faces` runs it); "align" is the FFHQ crop; total = detect + align. "decode"
is the JPEG decode of the same photo (what an upload also costs).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from service.portrait.configs import AlignerConfig  # noqa: E402
from service.portrait.media.alignment import FaceAligner  # noqa: E402
from service.portrait.media.images import load_image  # noqa: E402

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
        f"{'MP':>5}{'size':>12}{'transform':>10}{'decode':>9}{'detect':>9}{'exhaustive':>11}{'align':>9}{'total':>9}"
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
            detect = median_ms(lambda: aligner.detect(photo), args.runs)  # noqa: B023
            full = median_ms(lambda: aligner.detect(photo, exhaustive=True), args.runs)  # noqa: B023
            faces = aligner.detect(photo)
            align = median_ms(lambda: aligner.align_face(photo, faces[0]), args.runs)  # noqa: B023
            print(
                f"{megapixels:>5}{f'{photo.size[0]}x{photo.size[1]}':>12}{transform:>10}{decode:>9.0f}"
                f"{detect:>9.0f}{full:>11.0f}{align:>9.0f}{detect + align:>9.0f}"
            )


if __name__ == "__main__":
    main()
