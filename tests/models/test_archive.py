"""The bounded zip reader behind every upload of archives (service/portrait/media/archive.py): entries counted
before the directory is parsed, sizes and ratios checked before a read, corrupt and encrypted entries typed."""

from __future__ import annotations

import io
import os
import struct
import zipfile

import pytest

from service.portrait.media.archive import Archive, ArchiveError, ArchiveLimits, declared_entries
from tests.reliability.media_cases import zip_of

LIMITS = ArchiveLimits(max_total=50 << 20, max_entry=8 << 20, max_files=100)


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    return zip_of(entries, compression)


def _refusal(data: bytes, limits: ArchiveLimits = LIMITS) -> str:
    with pytest.raises(ArchiveError) as caught:
        Archive(io.BytesIO(data), limits).close()
    return caught.value.code


def test_readable_entries_are_read_and_refused_ones_are_listed_with_their_reason() -> None:
    photo = os.urandom(200_000)  # photos barely compress
    data = _zip({"a.jpg": photo, "../up.jpg": photo, "/abs.jpg": photo, "bomb.jpg": b"\0" * (4 << 20)})
    with Archive(io.BytesIO(data), LIMITS) as archive:
        reasons = {m.name: m.reason for m in archive.members}
        assert reasons == {"a.jpg": None, "../up.jpg": "unsafe_path", "/abs.jpg": "unsafe_path",
                           "bomb.jpg": "suspicious_compression"}  # fmt: skip
        assert archive.read(archive.members[0]) == photo
        assert archive.read(archive.members[0], 10) == photo[:10]
        with pytest.raises(ArchiveError) as caught:
            archive.read(archive.members[3])  # a refused entry is never inflated
        assert caught.value.code == "suspicious_compression"


def test_an_archive_is_refused_whole_when_it_is_not_a_zip_or_too_big() -> None:
    assert _refusal(b"PK\x03\x04" + os.urandom(5000)) == "invalid_archive"  # garbage after the magic
    assert _refusal(b"") == "invalid_archive"
    many = _zip({f"{i}.jpg": b"x" for i in range(101)})
    assert _refusal(many) == "too_many_files"
    big = _zip({f"{i}.bin": os.urandom(1 << 20) for i in range(3)}, zipfile.ZIP_STORED)
    assert _refusal(big, ArchiveLimits(max_total=2 << 20, max_entry=8 << 20, max_files=10)) == "payload_too_large"


def test_the_entry_count_is_read_before_the_directory_is_parsed() -> None:
    """An end record that declares 60 000 entries over a broken directory: refused for the count, so
    zipfile never parsed (or choked on) the directory."""
    data = bytearray(_zip({"a.jpg": b"x"}))
    at = data.rfind(b"PK\x05\x06")
    data[at + 8 : at + 12] = struct.pack("<HH", 60000, 60000)
    data[at + 16 : at + 20] = struct.pack("<I", 0)  # the directory's offset, now wrong
    assert declared_entries(io.BytesIO(bytes(data))) == 60000
    assert _refusal(bytes(data)) == "too_many_files"


def test_corrupt_and_encrypted_entries_are_typed_errors() -> None:
    payload = os.urandom(50_000) + b"a" * 50_000
    data = bytearray(_zip({"a.png": payload}))
    start = 30 + len("a.png")  # the local header, then the compressed data
    for i in range(start + 100, start + 400):
        data[i] ^= 0x5A
    with Archive(io.BytesIO(bytes(data)), LIMITS) as archive, pytest.raises(ArchiveError) as caught:
        archive.read(archive.members[0])
    assert caught.value.code == "invalid_archive" and "a.png" in caught.value.message

    flagged = bytearray(_zip({"secret.png": b"not really encrypted"}))
    flagged[6] |= 0x1  # the "encrypted" bit, in the local header and in the directory: zipfile would
    flagged[flagged.find(b"PK\x01\x02") + 8] |= 0x1  # raise RuntimeError (password required) reading it
    with Archive(io.BytesIO(bytes(flagged)), LIMITS) as archive:
        assert archive.members[0].reason == "encrypted_entry"
        with pytest.raises(ArchiveError):
            archive.read(archive.members[0])
