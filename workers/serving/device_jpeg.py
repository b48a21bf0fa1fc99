"""JPEG results encoded where the generator left them: nvJPEG on the GPU, through NVIDIA's nvImageCodec.

A 1024 px result is 3 MB of pixels and about 0.25 MB of JPEG. On a GPU host the result's pixels would
otherwise cross to the host (2.3 ms per image from pageable memory) and be encoded by Pillow in the CPU
pool (7 ms of a core); nvJPEG encodes a batch of 32 in about 0.25 ms per image and only the bytes come
back (figures: ../shared/design/gpu-measurements.md, H200).

Why nvImageCodec (`nvidia-nvimgcodec-cu12`, the worker image's `gpu` extra) and not torchvision's
`encode_jpeg`: it is one wheel whatever torch build sits beside it, and on a host without a GPU it
encodes with libjpeg-turbo, byte for byte what Pillow writes at the same quality and subsampling. The
tests run this module's whole path there (tests/service/test_device_jpeg.py); on CUDA the same calls take
device tensors (DLPack) and nvJPEG.

`AGILEGAN_JPEG_ENCODER`: `auto` (nvImageCodec on CUDA when its GPU encoder answers a probe at start,
Pillow otherwise), `pillow`, or `nvimgcodec` (required: the worker refuses to start without it; on the
CPU it uses libjpeg-turbo).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import torch

from service.portrait.media.images import JPEG_QUALITY

log = logging.getLogger("agilegan.worker")


class DeviceJpegUnavailable(RuntimeError):
    """nvImageCodec is not installed, or its encoder for the device gave no JPEG at start."""


class DeviceJpeg:
    """Encodes rows [S, S, 3] uint8 RGB on one device to JPEG bytes, a batch per call (4:4:4 at
    `JPEG_QUALITY`, as `service.portrait.media.images.encode_image` writes JPEG). Thread-safe: one call at a
    time (the encoder keeps per-call state)."""

    def __init__(self, device: torch.device, codec: Any) -> None:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())  # as the tensors on it name it
        self.device = device
        if device.type == "cuda":
            gpu = [codec.Backend(codec.BackendKind.GPU_ONLY), codec.Backend(codec.BackendKind.HYBRID_CPU_GPU)]
            self._encoder = codec.Encoder(device_id=device.index, backends=gpu)
        else:
            self._encoder = codec.Encoder(device_id=codec.NVIMGCODEC_DEVICE_CPU_ONLY)
        self._params = codec.EncodeParams(
            quality_type=codec.QualityType.QUALITY,
            quality_value=JPEG_QUALITY,
            chroma_subsampling=codec.ChromaSubsampling.CSS_444,
        )
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "nvjpeg" if self.device.type == "cuda" else "nvimgcodec-cpu"

    def encode(self, rows: Sequence[torch.Tensor]) -> list[bytes | Exception]:
        """JPEG bytes per row, in order; a row the encoder refuses (wrong shape or dtype, another device)
        gets its exception instead, and the others are still encoded."""
        images: list[Any] = []
        out: list[bytes | Exception | None] = []
        for row in rows:
            if row.dtype != torch.uint8 or row.dim() != 3 or row.shape[-1] != 3 or row.device != self.device:
                out.append(ValueError(f"not an [S, S, 3] uint8 image on {self.device}: {row.dtype} {tuple(row.shape)}"))
                continue
            images.append(row.contiguous() if self.device.type == "cuda" else row.contiguous().numpy())
            out.append(None)
        stream = torch.cuda.current_stream(self.device).cuda_stream if self.device.type == "cuda" else 0
        with self._lock:
            streams = self._encoder.encode(images, "jpeg", params=self._params, cuda_stream=stream) if images else []
        encoded = iter(streams)
        results: list[bytes | Exception] = []
        for slot in out:
            if slot is not None:
                results.append(slot)
                continue
            code_stream = next(encoded)
            results.append(RuntimeError("nvImageCodec gave no JPEG") if code_stream is None else bytes(code_stream))
        return results


def open_device_jpeg(setting: str, device: torch.device) -> DeviceJpeg | None:
    """The worker's device JPEG encoder for `AGILEGAN_JPEG_ENCODER` (module docs), probed with one small
    image; None means Pillow in the CPU pool. DeviceJpegUnavailable when `nvimgcodec` is asked for and
    cannot encode."""
    if setting == "pillow" or (setting == "auto" and device.type != "cuda"):
        return None
    try:
        encoder = DeviceJpeg(device, _import_codec())
        probe = encoder.encode([torch.zeros((16, 16, 3), dtype=torch.uint8, device=device)])[0]
        if isinstance(probe, Exception):
            raise probe
        if not probe.startswith(b"\xff\xd8"):
            raise RuntimeError("the probe's bytes are not a JPEG")
    except Exception as e:
        if setting == "nvimgcodec":
            raise DeviceJpegUnavailable(f"AGILEGAN_JPEG_ENCODER=nvimgcodec cannot encode on {device}: {e}") from e
        log.warning("JPEG results through Pillow: nvImageCodec cannot encode on %s (%s)", device, e)
        return None
    log.info("JPEG results encoded on %s (%s)", device, encoder.name)
    return encoder


def _import_codec() -> Any:
    try:
        from nvidia import nvimgcodec
    except ImportError as e:
        raise DeviceJpegUnavailable("nvImageCodec is not installed (pip install nvidia-nvimgcodec-cu12[nvjpeg])") from e
    return nvimgcodec
