"""The span-tree kernels, native when the Rust extension (analysis/native) is built.

Three steps of the analysis walk span trees in a loop that numpy can only run one depth
level or one walk step at a time: the root above each span, clock-skew shifts, and the
event-mode critical paths summed per delivery and label. `analysis/native` runs them as
plain loops (the walk on two threads), with the GIL released; the numpy versions in tree.py,
clock_skew.py and critical_path.py stay the reference and the fallback (the extension is not
built without cargo; `HOPSCOPE_NATIVE=0` turns it off for comparisons).
tests/unit/test_analysis_kernels.py checks both give the same arrays.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .spans import SpanArrays

try:
    import hopscope_analysis_native as _native
except ImportError:  # not built: bin/bootstrap builds it where cargo is available
    _native = None

AVAILABLE = _native is not None and os.environ.get("HOPSCOPE_NATIVE", "1") != "0"
_THREADS = min(2, os.cpu_count() or 1)


def _i64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def event_roots(sa: SpanArrays) -> np.ndarray:
    """The root above each span of the event tree (itself for a root), -1 where none is reached."""
    assert _native is not None
    return np.frombuffer(_native.event_roots(_i64(sa.event_parent)), dtype=np.int64)


def skew_shifts(sa: SpanArrays) -> tuple[np.ndarray, np.ndarray]:
    """(shift ns, own clock corrected) per span: clock_skew.correct's rules."""
    assert _native is not None
    delta, corrected = _native.skew_shifts(
        _i64(sa.event_parent),
        _i64(sa.parent),
        _i64(sa.start),
        _i64(sa.end),
        np.ascontiguousarray(sa.kind, dtype=np.int8),
        np.ascontiguousarray(sa.host, dtype=np.int32),
    )
    return np.frombuffer(delta, dtype=np.int64), np.frombuffer(corrected, dtype=bool)


def event_path_sums(
    sa: SpanArrays, targets: np.ndarray, start: np.ndarray, end: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """hops.PathSums.result() of the event-mode walk from each target:
    (walker, label int32, total ns, first start ns), ordered by walker then label."""
    assert _native is not None
    walker, label, total, first = _native.event_path_sums(
        _i64(sa.event_parent),
        _i64(sa.parent),
        _i64(start),
        _i64(end),
        np.ascontiguousarray(sa.kind, dtype=np.int8),
        np.ascontiguousarray(sa.hop, dtype=np.int32),
        _i64(targets),
        len(sa.hop_names),
        n_labels,
        threads=_THREADS,
    )
    return (
        np.frombuffer(walker, dtype=np.int64),
        np.frombuffer(label, dtype=np.int32),
        np.frombuffer(total, dtype=np.int64),
        np.frombuffer(first, dtype=np.int64),
    )
