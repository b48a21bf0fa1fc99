"""The exemplars of a style or direction upload, read safely: one file at a time, zip archives through the
bounded reader of models/archive.py (entry count, expanded total, per-entry size and ratio, unsafe paths,
encrypted and corrupt entries: see there).

Nothing here holds more than one exemplar in memory. A refused entry is listed in the per-file answer
with its reason; an archive refused whole is an `ArchiveError` (413 `too_many_files` /
`payload_too_large`, 422 `invalid_archive`). Blocking: callers run these in a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse

from models.archive import Archive, ArchiveError, ArchiveLimits
from models.errors import InputError
from models.exemplar_files import IMAGE_SUFFIXES, hidden, label_of
from service.faces import FaceFinder

__all__ = ["ArchiveError", "ArchiveLimits", "Entry", "bounded_reader", "check_exemplar", "open_archive", "too_few"]


@dataclass(frozen=True)
class Entry:
    """One exemplar file: `read` gives its bytes (at most max_entry + 1), or `reason` says why not."""

    name: str
    read: Callable[[], bytes] | None = None
    reason: str | None = None
    message: str = ""


def bounded_reader(stream: IO[bytes], limit: int) -> Callable[[], bytes]:
    def read() -> bytes:
        stream.seek(0)
        return stream.read(limit + 1)

    return read


def open_archive(fileobj: IO[bytes], limits: ArchiveLimits) -> tuple[Archive, list[Entry]]:
    """The open archive (close it when done) and its entries in archive order, hidden files (.DS_Store,
    __MACOSX) skipped."""
    archive = Archive(fileobj, limits, keep=lambda name: not hidden(PurePosixPath(name).parts))
    entries = [
        Entry(m.name, reason=m.reason, message=m.message)
        if m.reason
        else Entry(m.name, read=lambda m=m: archive.read(m, limits.max_entry + 1))
        for m in archive.members
    ]
    return archive, entries


async def check_exemplar(
    faces: FaceFinder, entry: Entry, max_bytes: int, max_pixels: int, min_face: int
) -> tuple[dict, bytes | None]:
    """(report row, the bytes when accepted). Reads the one file, off the event loop."""
    name = entry.name
    if entry.read is None:
        return {"file": name, "accepted": False, "reason": entry.reason, "message": entry.message}, None
    if not name.lower().endswith(IMAGE_SUFFIXES):
        return {"file": name, "accepted": False, "reason": "not_an_image", "message": "expected jpg, png or webp"}, None
    try:
        data = await anyio.to_thread.run_sync(entry.read)
    except ArchiveError as e:  # a corrupt entry: that file is refused, the others still count
        return {"file": name, "accepted": False, "reason": e.code, "message": e.message}, None
    if len(data) > max_bytes:
        return {"file": name, "accepted": False, "reason": "file_too_large", "message": f"over {max_bytes} bytes"}, None
    try:
        landmarks = await faces.landmarks(data, max_pixels, min_face)
    except InputError as e:
        return {"file": name, "accepted": False, "reason": e.code, "message": e.message}, None
    return {"file": name, "accepted": True, "label": label_of(name), "landmarks": landmarks}, data


def too_few(request: Request, code: str, message: str, files: list[dict]) -> JSONResponse:
    """The 422 of an upload with too few usable images: the error body plus the per-file report."""
    body = {"code": code, "request_id": request.state.request_id, "files": files, "message": message}
    return JSONResponse(status_code=422, content=body)
