"""The exemplars of a style or direction upload, read safely: one file at a time, zip archives through the
bounded reader of service/portrait/media/archive.py
(entry count, expanded total, per-entry size and ratio, unsafe paths,
encrypted and corrupt entries: see there).

Nothing here holds more than one exemplar in memory. A refused entry is listed in the per-file answer
with its reason; an archive refused whole is an `ArchiveError` (413 `too_many_files` /
`payload_too_large`, 422 `invalid_archive`). Blocking: callers run these in a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any

import anyio.to_thread
from fastapi.responses import JSONResponse

from service.api.faces import FaceFinder
from service.platform.settings import Settings
from service.platform.storage import Storage
from service.portrait.errors import InputError
from service.portrait.exemplar_files import IMAGE_SUFFIXES, hidden, label_of
from service.portrait.media.archive import Archive, ArchiveError, ArchiveLimits

__all__ = [
    "ArchiveError",
    "ArchiveLimits",
    "Entry",
    "bounded_reader",
    "check_exemplar",
    "manifest_of",
    "open_archive",
    "public_report",
    "stage_exemplars",
    "too_few",
    "upload_limits",
]


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


def too_few(request_id: str, code: str, message: str, files: list[dict]) -> JSONResponse:
    """The 422 of an upload with too few usable images: the error body plus the per-file report."""
    body = {"code": code, "request_id": request_id, "files": files, "message": message}
    return JSONResponse(status_code=422, content=body)


@dataclass(frozen=True)
class Uploads:
    """What staging an upload's exemplars uses: the face finder, the storage they are staged in, the limits."""

    faces: FaceFinder
    storage: Storage
    settings: Settings


def upload_limits(settings: Any) -> ArchiveLimits:
    """The bounds of one style or direction upload, from the settings."""
    return ArchiveLimits(
        max_total=settings.max_style_upload_bytes,
        max_entry=settings.max_upload_bytes,
        max_files=settings.max_style_files,
    )


async def stage_exemplars(
    uploads: Uploads, staging: Any, entries: list[Entry], report: list[dict], label: str | None = None
) -> None:
    """Each entry through `check_exemplar`, one at a time: its report row appended to `report` (with
    `label` when given), its bytes, when accepted, staged as file number len(report) in `staging`."""
    settings, storage = uploads.settings, uploads.storage
    max_entry = settings.max_upload_bytes
    for entry in entries:
        row, data = await check_exemplar(uploads.faces, entry, max_entry, settings.max_pixels, settings.min_face_size)
        if label is not None:
            row["label"] = label
        if data is not None:
            await anyio.to_thread.run_sync(storage.stage_file, staging, len(report), data)
        report.append(row)


def public_report(report: list[dict]) -> list[dict]:
    """The per-file answer: each row without its landmarks."""
    return [{k: v for k, v in r.items() if k != "landmarks"} for r in report]


def manifest_of(report: list[dict], accepted: list[int]) -> dict:
    """The upload's manifest for the worker: each accepted file's name, label and landmarks."""
    rows = [report[i] for i in accepted]
    return {"files": [{"name": r["file"], "label": r["label"], "landmarks": r["landmarks"]} for r in rows]}
