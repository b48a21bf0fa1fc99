"""Exemplar file conventions shared by the API (torch-free) and training."""

from __future__ import annotations

from pathlib import PurePosixPath

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MIN_EXEMPLARS = 20  # usable exemplars a style needs: AGILEGAN_MIN_EXEMPLARS (API) and --min-exemplars (CLI)


def too_few_exemplars(count: int, minimum: int) -> str | None:
    """The refusal of a style with `count` usable exemplars, or None when there are enough."""
    if count >= minimum:
        return None
    return f"{count} usable exemplars; at least {minimum} are needed (about 100 is typical)"


def hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in parts)


def label_of(name: str) -> str | None:
    parts = PurePosixPath(name).parts
    return parts[0].lower() if len(parts) > 1 else None
