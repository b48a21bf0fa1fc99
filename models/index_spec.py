"""Index lists as users write them ("4", "0-3", "0-3,8"), parsed without torch (the API uses it too)."""

from __future__ import annotations


def parse_indices(spec: str) -> list[int]:
    """ "4" → [4]; "0-3,8" → [0, 1, 2, 3, 8]: sorted, distinct. ValueError for anything else (a reversed
    range, a non-number, an empty list). Bounds are the caller's to check."""
    out: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        a, b = int(low), int(high) if high else int(low)
        if a > b:
            raise ValueError(f"reversed range {part!r}")
        out.update(range(a, b + 1))
    if not out:
        raise ValueError("no indices")
    return sorted(out)
