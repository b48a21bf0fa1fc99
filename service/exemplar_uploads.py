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

from models.archive import Archive, ArchiveError, ArchiveLimits
from models.exemplar_files import hidden

__all__ = ["ArchiveError", "ArchiveLimits", "Entry", "bounded_reader", "open_archive"]


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
