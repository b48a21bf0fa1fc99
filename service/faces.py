"""Finding the face of an upload in the API process: decode, detect, check size (no torch).

Both stylize uploads and style exemplars go through `FaceFinder.landmarks`; the worker later renders
the FFHQ crop from the landmarks it returns.

Detection is CPU-bound C++ (dlib) that releases the GIL. `FaceFinder` runs it in worker threads, at
most `concurrency` at once, so the decodes in flight (and their memory) are bounded; requests beyond
that wait on the event loop, not in a thread, so the thread pool stays free for everything else.
The default, 4 per core, was measured with bench/service.py at 8 clients on 2 cores (README): 1 per
core lost a fifth of the throughput to the co-located worker and to decode/detect overlap; 4 per core
matched unbounded threads.
"""

from __future__ import annotations

import os

import anyio
import anyio.to_thread

from models.alignment import FaceAligner
from models.errors import FaceIndexOutOfRange, FaceTooSmall, NoFaceFound
from models.images import load_image


def face_landmarks(
    aligner: FaceAligner, data: bytes, max_pixels: int, min_face_size: int, face_index: int = 0
) -> list[list[float]]:
    """The 68 landmarks of the `face_index`-th largest face; raises the typed InputErrors."""
    photo = load_image(data, max_pixels).image
    faces = aligner.detect(photo, exhaustive=face_index > 0)
    if not faces:
        raise NoFaceFound("no human face was found in the image")
    if face_index >= len(faces):
        raise FaceIndexOutOfRange(f"face_index {face_index} asked, but {len(faces)} face(s) were found")
    face = faces[face_index]
    if face.size < min_face_size:
        raise FaceTooSmall(f"the face is {face.size:.0f} px across; at least {min_face_size} px is needed")
    return face.landmarks.tolist()


def default_concurrency() -> int:
    """Four detections per CPU core this process may run on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 4 * max(1, cores)


class FaceFinder:
    """`face_landmarks` off the event loop, at most `concurrency` at a time (built inside the event loop)."""

    def __init__(self, aligner: FaceAligner, concurrency: int) -> None:
        self.aligner = aligner
        self.limiter = anyio.CapacityLimiter(concurrency)
        aligner.warm(concurrency)

    async def landmarks(
        self, data: bytes, max_pixels: int, min_face_size: int, face_index: int = 0
    ) -> list[list[float]]:
        return await anyio.to_thread.run_sync(
            face_landmarks, self.aligner, data, max_pixels, min_face_size, face_index, limiter=self.limiter
        )
