"""Exemplar file conventions shared by the API (torch-free) and training."""

from __future__ import annotations

from pathlib import PurePosixPath

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in parts)


def label_of(name: str) -> str | None:
    parts = PurePosixPath(name).parts
    return parts[0].lower() if len(parts) > 1 else None
