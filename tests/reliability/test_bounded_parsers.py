"""Parsers of client input bound their work by the input's meaning, never by its text (issue 22, finding 1).

`edits={"sefa":{"alpha":1,"layers":"0-99999999"}}`, 46 bytes of form field, once made the API build a
set of 10⁸ ints (20 GB) on its event loop. Here the parse runs in a child process with a 1 GiB address
space: the old parser dies there of MemoryError, the bounded one refuses the range at once. The same
request through the app is a case of tests/service/test_edits.py (a 422 `invalid_edit_layers`).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from service.portrait.index_spec import parse_indices
try:
    parse_indices(sys.argv[1], 18)
except ValueError as e:
    print("refused:", e)
"""


@pytest.mark.parametrize("spec", ["0-99999999", "0-99999999999999999999", "5,0-4000000000", "1," * 200 + "1"])
def test_an_index_list_is_refused_by_its_meaning_in_bounded_memory(spec: str) -> None:
    probe = subprocess.run([sys.executable, "-c", PROBE, spec], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.startswith("refused:"), probe.stderr[-500:]


def test_index_lists_within_the_limit_parse() -> None:
    from service.portrait.index_spec import MAX_SPEC_CHARS, parse_indices

    assert parse_indices("0-17", 18) == list(range(18))
    assert parse_indices("3, 1-2,3", 18) == [1, 2, 3]
    for bad in ("0-18", "18", "-1", "2-1", "", "a", ",", "1" * (MAX_SPEC_CHARS + 1)):
        with pytest.raises(ValueError):
            parse_indices(bad, 18)
