"""Finding the face of an upload in the API process: decode, detect, check size (no torch).

Both stylize uploads and style exemplars go through `FaceFinder.landmarks`; the worker later renders
the FFHQ crop from the landmarks it returns.

Detection is CPU-bound C++ (dlib) that releases the GIL. `FaceFinder` runs it in worker threads, at
most `concurrency` at once, so the decodes in flight (and their memory) are bounded; requests beyond
that wait on the event loop, not in a thread, so the thread pool stays free for everything else.
The default, 2 per core and at most 8, was measured with bench/service.py and bench/chaos.py at 8
clients on 2 cores (README): 1 per core lost a fifth of the throughput to the co-located worker and to
decode/detect overlap; 2 per core matched 4 per core and unbounded threads at a third less memory.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager

import anyio
import anyio.to_thread

from service.portrait.errors import FaceIndexOutOfRange, NoFaceFound, TooManyFaces
from service.portrait.media.alignment import FaceAligner, none_large_enough
from service.portrait.media.images import load_for_analysis

ANALYSIS_MAX_SIDE = 2048  # px: faces are found on a copy this large at most (landmarks scaled back)


def face_landmarks(
    aligner: FaceAligner,
    data: bytes,
    max_pixels: int,
    min_face_size: int,
    face_index: int = 0,
    max_side: int = ANALYSIS_MAX_SIDE,
    full_decode_gate: AbstractContextManager[object] | None = None,
) -> list[list[float]]:
    """The 68 landmarks (full-resolution photo coordinates) of the `face_index`-th largest face; raises
    the typed InputErrors. The photo is decoded at most `max_side` px on its longer side (JPEG straight
    at reduced scale), so a 40 MP upload costs what a 4 MP one does."""
    analysis = load_for_analysis(data, max_pixels, max_side, full_decode_gate)
    faces = aligner.detect(analysis.image, exhaustive=face_index > 0)
    if not faces:
        raise NoFaceFound("no human face was found in the image")
    if face_index >= len(faces):
        raise FaceIndexOutOfRange(f"face_index {face_index} asked, but {len(faces)} face(s) were found")
    face = faces[face_index]
    face.check_size(min_face_size, analysis.scale)
    return analysis.to_full(face.landmarks).tolist()


def group_faces(
    aligner: FaceAligner,
    data: bytes,
    max_pixels: int,
    min_face_size: int,
    max_faces: int,
    max_side: int = ANALYSIS_MAX_SIDE,
    full_decode_gate: AbstractContextManager[object] | None = None,
) -> list[dict]:
    """`faces=all`: every face of the photo, largest first, as `contract.GroupFace` fields: a face of at
    least `min_face_size` gets its landmarks, a smaller one is listed as skipped. Raises NoFaceFound (none
    at all), FaceTooSmall (none large enough) and TooManyFaces (more than `max_faces` to stylize)."""
    analysis = load_for_analysis(data, max_pixels, max_side, full_decode_gate)
    faces = aligner.detect(analysis.image, exhaustive=True)  # the fast pass may miss small faces
    if not faces:
        raise NoFaceFound("no human face was found in the image")
    listed = []
    for face in faces:
        box = [round(v * analysis.scale, 1) for v in face.box]
        if not face.large_enough(min_face_size, analysis.scale):
            listed.append({"box": box, "landmarks": None, "skipped": "too_small"})
        else:
            listed.append({"box": box, "landmarks": analysis.to_full(face.landmarks).tolist(), "skipped": None})
    stylized = sum(f["landmarks"] is not None for f in listed)
    if stylized == 0:
        raise none_large_enough(len(listed), min_face_size)
    if stylized > max_faces:
        raise TooManyFaces(f"{stylized} faces to stylize; at most {max_faces} per photo")
    return listed


MAX_DEFAULT_CONCURRENCY = 8


def default_concurrency() -> int:
    """Two detections per CPU core this process may run on, at most 8.

    Measured (bench/service.py, bench/chaos.py, 2-core machine): 4 concurrent detections serve 8
    clients as fast as 8 do (p50 243 vs 236 ms, p99 334 vs 340 ms), while each concurrent full
    detection pass holds about 70 MB: 16 faceless uploads at once took the API to 1,023 MB at 8 and
    757 MB at 4. The cap keeps a many-core host's API process under 1 GB.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return min(2 * max(1, cores), MAX_DEFAULT_CONCURRENCY)


class FaceFinder:
    """`face_landmarks` and `group_faces` off the event loop, at most `concurrency` at a time (built inside
    the event loop)."""

    def __init__(self, aligner: FaceAligner, concurrency: int) -> None:
        self.aligner = aligner
        self.limiter = anyio.CapacityLimiter(concurrency)
        # Large non-JPEG photos decode at full size before they are reduced (~200 MB at the peak for
        # 40 MP RGB): one per two cores at a time (the detections themselves run on small copies).
        self.full_decodes = threading.BoundedSemaphore(max(1, concurrency // 8))
        aligner.warm(concurrency)

    async def landmarks(
        self, data: bytes, max_pixels: int, min_face_size: int, face_index: int = 0
    ) -> list[list[float]]:
        return await self._off_loop(face_landmarks, data, max_pixels, min_face_size, face_index)

    async def group(self, data: bytes, max_pixels: int, min_face_size: int, max_faces: int) -> list[dict]:
        """`group_faces` (faces=all)."""
        return await self._off_loop(group_faces, data, max_pixels, min_face_size, max_faces)

    async def _off_loop(self, find, data: bytes, max_pixels: int, min_face_size: int, last: int):
        """`find(aligner, data, …)` in a worker thread, within the concurrency limit and the full-decode gate."""
        return await anyio.to_thread.run_sync(
            find,
            self.aligner,
            data,
            max_pixels,
            min_face_size,
            last,
            ANALYSIS_MAX_SIDE,
            self.full_decodes,
            limiter=self.limiter,
        )
