"""JPEG results of a batch: on the device (workers/serving/device_jpeg.py) against the host path, in one script.

Usage:
    python bench/device_jpeg.py [--device cuda|cpu] [--batches 1,32] [--size 1024] [--threads N] [--runs 5]

A batch of `--size` px portraits (the test photos, tiled to the batch) sits on the device as the
generator leaves it ([B, S, S, 3] uint8). Two ways to JPEG bytes, timed alternately, median of `--runs`:
- host: each row copied to the host and encoded by Pillow, the rows side by side in a pool of `--threads`
  threads (the worker's CPU pool; default the host's cores) — what a worker without a device encoder does;
- device: one `DeviceJpeg.encode` of the batch (nvJPEG on CUDA; libjpeg-turbo through nvImageCodec on the
  CPU), only the bytes coming back.
Prints ms per image and images/s for each, the bytes per image, and how far the device's JPEG decodes from
Pillow's (identical bytes on the CPU; PSNR between the two decoded images on a GPU).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from service.portrait.media.images import encode_image  # noqa: E402
from workers.serving.device_jpeg import open_device_jpeg  # noqa: E402

FACES = ROOT / "tests" / "data" / "faces"
PHOTOS = ("obama.jpg", "biden.jpg", "alex-lacamoire.png", "two_people.jpg")


def portraits(batch: int, size: int, device: torch.device) -> torch.Tensor:
    """[batch, size, size, 3] uint8 on `device`: the test photos, resized, repeated to the batch."""
    images = [
        np.asarray(Image.open(FACES / n).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for n in PHOTOS
    ]
    return torch.from_numpy(np.stack([images[i % len(images)] for i in range(batch)])).to(device)


def host_path(pixels: torch.Tensor, pool: ThreadPoolExecutor) -> list[bytes]:
    def one(i: int) -> bytes:
        return encode_image(Image.fromarray(pixels[i].cpu().numpy(), "RGB"), "jpeg")

    return list(pool.map(one, range(len(pixels))))


def psnr(a: bytes, b: bytes) -> float:
    x, y = (np.asarray(Image.open(io.BytesIO(d)), dtype=np.float64) for d in (a, b))
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"# bench/device_jpeg.py {' '.join(sys.argv[1:])}")
    device = torch.device(args.device)
    encoder = open_device_jpeg("nvimgcodec", device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"device encoder: {encoder.name} on {encoder.device}; host path: Pillow in {args.threads} threads")
    print(
        "| batch | host ms/image | device ms/image | host images/s | device images/s | bytes/image | device vs Pillow |"
    )
    print("|---|---|---|---|---|---|---|")
    with ThreadPoolExecutor(args.threads) as pool:
        for batch in (int(b) for b in args.batches.split(",")):
            pixels = portraits(batch, args.size, device)
            ways = {"host": lambda p=pixels: host_path(p, pool), "device": lambda p=pixels: encoder.encode(list(p))}
            outputs = {name: way() for name, way in ways.items()}  # warm-up (nvJPEG's buffers, the pool)
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.runs):
                for name, way in ways.items():
                    sync()
                    start = time.perf_counter()
                    way()
                    times[name].append((time.perf_counter() - start) * 1000 / batch)
            host, dev = (statistics.median(times[n]) for n in ("host", "device"))
            same = all(a == b for a, b in zip(outputs["host"], outputs["device"], strict=True))
            closeness = (
                "identical bytes"
                if same
                else f"{min(psnr(a, b) for a, b in zip(outputs['host'], outputs['device'])):.1f} dB (min)"
            )
            size = statistics.mean(len(b) for b in outputs["device"])
            print(
                f"| {batch} | {host:.2f} | {dev:.2f} | {1000 / host:.0f} | {1000 / dev:.0f} "
                f"| {size / 1e3:.0f} kB | {closeness} |"
            )


if __name__ == "__main__":
    main()
