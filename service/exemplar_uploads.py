"""The exemplars of a style upload, read safely: one file at a time, zip archives streamed with bounds.

Nothing here holds more than one exemplar in memory. An archive is refused whole when it is not a zip
or declares more bytes than the upload limit (413); an entry is refused (and listed in the per-file
answer) when its path is absolute or climbs out with `..` (`unsafe_path`), when it is larger than one
image may be (`file_too_large`), or when it expands more than `max_ratio` times (`suspicious_compression`:
photos barely compress, a zip bomb expands a thousandfold). zipfile stops every read at the entry's
declared size, so the declared sizes bound the work. Blocking: callers run these in a thread.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import IO

from models.exemplar_files import hidden
from service.errors import ApiError


@dataclass(frozen=True)
class ArchiveLimits:
    max_total: int  # bytes all entries may expand to
    max_entry: int  # bytes one image may have
    max_files: int
    max_ratio: float = 50.0


@dataclass(frozen=True)
class Entry:
    """One exemplar file: `read` gives its bytes (at most max_entry + 1), or `reason` says why not."""

    name: str
    read: Callable[[], bytes] | None = None
    reason: str | None = None
    message: str = ""


def unsafe(name: str) -> bool:
    """An absolute path, a drive, or a `..` component: never a name we accept."""
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    return (
        posix.is_absolute()
        or bool(windows.drive)
        or name.startswith("\\\\")
        or ".." in posix.parts
        or ".." in windows.parts
    )


def bounded_reader(stream: IO[bytes], limit: int) -> Callable[[], bytes]:
    def read() -> bytes:
        stream.seek(0)
        return stream.read(limit + 1)

    return read


def open_archive(fileobj: IO[bytes], limits: ArchiveLimits) -> tuple[zipfile.ZipFile, list[Entry]]:
    """The open zip (close it when done) and its entries in archive order, hidden files skipped."""
    try:
        z = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ApiError(422, "invalid_archive", "the archive is not a readable zip file") from e
    try:
        return z, _entries(z, limits)
    except BaseException:
        z.close()
        raise


def _entries(z: zipfile.ZipFile, limits: ArchiveLimits) -> list[Entry]:
    infos = [
        i
        for i in z.infolist()
        if not i.is_dir() and (unsafe(i.filename) or not hidden(PurePosixPath(i.filename).parts))
    ]  # hidden files (.DS_Store, __MACOSX) are skipped; '..' looks hidden but is refused, not skipped
    if len(infos) > limits.max_files:
        raise ApiError(413, "too_many_files", f"the archive has more than {limits.max_files} files")
    if sum(i.file_size for i in infos) > limits.max_total:
        raise ApiError(413, "payload_too_large", f"the archive expands to more than {limits.max_total} bytes")
    entries = []
    for info in infos:
        name = info.filename
        if unsafe(name):
            entries.append(Entry(name, reason="unsafe_path", message="absolute paths and '..' are not allowed"))
        elif info.file_size > limits.max_entry:
            entries.append(Entry(name, reason="file_too_large", message=f"over {limits.max_entry} bytes"))
        elif info.file_size > limits.max_ratio * max(info.compress_size, 1024):
            message = f"expands {info.file_size / max(info.compress_size, 1):.0f}× (at most {limits.max_ratio:.0f}×)"
            entries.append(Entry(name, reason="suspicious_compression", message=message))
        else:
            entries.append(Entry(name, read=_zip_reader(z, info, limits.max_entry)))
    return entries


def _zip_reader(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with z.open(info) as f:
                return f.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
            raise ValueError(f"unreadable archive entry ({e})") from e

    return read
