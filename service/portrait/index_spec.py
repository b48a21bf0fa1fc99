"""Index lists as users write them ("4", "0-3", "0-3,8"), parsed without torch (the API uses it too).

The text comes from clients (the `layers` of an edit), so the work is bounded by what the indices mean,
never by the text: every number is checked against `limit` before a range is built, and the text
itself may be at most `MAX_SPEC_CHARS` long. "0-99999999" is refused at once, not expanded.
"""

from __future__ import annotations

MAX_SPEC_CHARS = 256  # "0,1,2,…,17" is 44 characters: a generous bound for any real index list


def parse_indices(spec: str, limit: int) -> list[int]:
    """ "4" → [4]; "0-3,8" → [0, 1, 2, 3, 8]: sorted, distinct, each in [0, limit). ValueError, with a
    message fit for the user, for anything else: a reversed range, a non-number, an empty list, an
    index ≥ `limit`, or a text longer than `MAX_SPEC_CHARS`."""
    if len(spec) > MAX_SPEC_CHARS:
        raise ValueError(f"an index list is at most {MAX_SPEC_CHARS} characters")
    out: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        a, b = int(low), int(high) if high else int(low)
        if a > b:
            raise ValueError(f"reversed range {part!r}")
        if a < 0 or b >= limit:
            raise ValueError(f"indices are 0…{limit - 1}, got {part.strip()!r}")
        out.update(range(a, b + 1))  # at most `limit` numbers: both ends were checked
    if not out:
        raise ValueError("no indices")
    return sorted(out)
