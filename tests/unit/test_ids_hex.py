"""Hex ids to 64-bit words (the analysis' id parser): Python's own int parsing is the truth."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hopscope.core import ids


def _raw(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8)


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=20),
    upper=st.booleans(),
    lower_only=st.booleans(),
)
def test_words_and_case(words: list[int], upper: bool, lower_only: bool) -> None:
    text = "".join(f"{w:016X}" if upper else f"{w:016x}" for w in words)
    got = ids.hex_u64(_raw(text), lower_only)
    has_upper = any(c in "ABCDEF" for c in text)
    if lower_only and has_upper:
        assert got is None
        return
    assert got is not None
    assert got[0].tolist() == [int(text[i : i + 16], 16) for i in range(0, len(text), 16)] == words
    assert got[1] == (has_upper and not lower_only)


def test_refusals() -> None:
    assert ids.hex_u64(_raw("0123456789abcdeg"), False) is None
    assert ids.hex_u64(_raw("0123456789abcde"), False) is None  # not a multiple of 16
    assert ids.hex_u64(_raw("0123456789abcde:"), False) is None  # ':' is one past '9'
    assert ids.hex_u64(_raw("0123456789abcde`"), False) is None  # '`' is one before 'a'
