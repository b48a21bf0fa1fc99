"""Zip archives from clients, read with bounds: the one reader behind exemplar uploads, direction-fit
uploads and zips of video frames. Torch-free (the API imports it).

Every bound is checked before the work it bounds:
1. the entry count, from the end-of-central-directory record, before zipfile parses the directory
   (a million tiny entries cost seconds and hundreds of MB to parse);
2. the expanded total, from the declared sizes, before any entry is read;
3. per entry: an unsafe path (absolute, a drive, `..`), a size over one file's limit, a ratio over
   `max_ratio` (photos and PNG frames barely compress; a zip bomb expands a thousandfold), an
   encrypted entry. Such entries are listed with a reason and never read;
4. a read returns at most `max_entry` bytes: zipfile stops at the declared size and checks the CRC,
   so a lying header ends in a typed error, never in more bytes.

Corrupt archives and entries (garbage after `PK\\x03\\x04`, bad deflate data, an unknown compression)
raise `ArchiveError`, never a bare zipfile, zlib or OS error. Blocking: callers run it in a thread.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from service.portrait.errors import InputError

# what zipfile, zlib and the file underneath raise for corrupt or unsupported data
CORRUPT = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    NotImplementedError,  # an unknown compression method
    RuntimeError,  # zipfile's "File is encrypted, password required"
    ValueError,
)
EOCD = b"PK\x05\x06"
EOCD_SIZE = 22
MAX_COMMENT = 0xFFFF


class ArchiveError(InputError):
    """An archive the service cannot take, with a stable `code`: invalid_archive (not a readable zip, or
    a corrupt entry), too_many_files, payload_too_large (expands past the total)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class ArchiveLimits:
    max_total: int  # bytes all entries may expand to, together
    max_entry: int  # bytes one entry may expand to
    max_files: int  # entries, directories and skipped ones included
    max_ratio: float = 50.0  # expanded / compressed, per entry (entries under 1 KiB compressed count as 1 KiB)


@dataclasses.dataclass(frozen=True)
class Member:
    """One file of the archive: readable (`reason` None) or refused with a `reason` and `message`."""

    name: str
    info: zipfile.ZipInfo
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


class Archive:
    """An open zip and its members in archive order (close it, or use `with`). `keep(name)` chooses
    the files worth listing (hidden files, say, are skipped); unsafe names are always listed, refused."""

    def __init__(
        self, source: Path | IO[bytes], limits: ArchiveLimits, keep: Callable[[str], bool] = lambda name: True
    ) -> None:
        self.limits = limits
        # 1. The entry count, before the directory is parsed.
        declared = declared_entries(source)
        if declared > limits.max_files:
            raise ArchiveError("too_many_files", f"the archive has {declared} entries; at most {limits.max_files}")
        try:
            self._zip = zipfile.ZipFile(source)
        except CORRUPT as e:
            raise ArchiveError("invalid_archive", "not a readable zip file") from e
        try:
            infos = [i for i in self._zip.infolist() if not i.is_dir() and (unsafe(i.filename) or keep(i.filename))]
            # 2. The expanded total, from the declared sizes.
            if sum(i.file_size for i in infos) > limits.max_total:
                raise ArchiveError("payload_too_large", f"the archive expands to more than {limits.max_total} bytes")
            # 3. Each entry's own bounds.
            self.members = [self._member(i) for i in infos]
        except BaseException:
            self._zip.close()
            raise

    def _member(self, info: zipfile.ZipInfo) -> Member:
        name, limits = info.filename, self.limits
        if unsafe(name):
            return Member(name, info, "unsafe_path", "absolute paths and '..' are not allowed")
        if info.flag_bits & 0x1:
            return Member(name, info, "encrypted_entry", "encrypted entries are not supported")
        if info.file_size > limits.max_entry:
            return Member(
                name, info, "file_too_large", f"expands to {info.file_size} bytes; at most {limits.max_entry}"
            )
        if info.file_size > limits.max_ratio * max(info.compress_size, 1024):
            ratio = info.file_size / max(info.compress_size, 1)
            return Member(
                name, info, "suspicious_compression", f"expands {ratio:.0f}× (at most {limits.max_ratio:.0f}×)"
            )
        return Member(name, info)

    def read(self, member: Member, limit: int | None = None) -> bytes:
        """The member's bytes (at most `limit`, default the entry limit). ArchiveError when the member
        was refused or its data is corrupt."""
        if member.reason is not None:
            raise ArchiveError(member.reason, f"{member.name}: {member.message}")
        try:
            with self._zip.open(member.info) as f:
                return f.read(self.limits.max_entry if limit is None else limit)
        except CORRUPT as e:
            raise ArchiveError("invalid_archive", f"{member.name}: unreadable entry ({type(e).__name__})") from e

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def declared_entries(source: Path | IO[bytes]) -> int:
    """The entry count of the end-of-central-directory record (ZIP64's when the record defers to it);
    ArchiveError when there is none. Reads at most the last 64 KiB + 22 bytes."""
    f = open(source, "rb") if isinstance(source, str | Path) else source  # noqa: SIM115
    try:
        start = f.tell() if f is source else 0
        f.seek(0, io.SEEK_END)
        size = f.tell()
        tail_start = max(0, size - EOCD_SIZE - MAX_COMMENT)
        f.seek(tail_start)
        tail = f.read()
        at = tail.rfind(EOCD)
        if at < 0 or len(tail) - at < EOCD_SIZE:
            raise ArchiveError("invalid_archive", "not a readable zip file (no end of central directory)")
        (total,) = struct.unpack("<H", tail[at + 10 : at + 12])
        if total == 0xFFFF:  # ZIP64: the locator sits right before the record
            locator = tail[at - 20 : at] if at >= 20 else b""
            if locator[:4] != b"PK\x06\x07":
                raise ArchiveError("invalid_archive", "a ZIP64 archive without its locator")
            (offset,) = struct.unpack("<Q", locator[8:16])
            f.seek(offset)
            record = f.read(56)
            if record[:4] != b"PK\x06\x06" or len(record) < 56:
                raise ArchiveError("invalid_archive", "a ZIP64 archive without its end record")
            (total,) = struct.unpack("<Q", record[32:40])
        return total
    finally:
        if f is source:
            f.seek(start)
        else:
            f.close()
