"""The span-tree kernels, native when the Rust extension (analysis/native) is built.

Four steps of the analysis are loops over spans or span trees that numpy can only run as
many whole-array passes (hex parsing, sorting, binary searches) or one depth level or walk
step at a time: the id index (trace codes, (trace, span id) order, parents, links), the root
above each span, clock-skew shifts, and the event-mode critical paths summed per delivery
and label. `analysis/native` runs them as plain loops (the walk on two threads), with the
GIL released; the numpy versions in id_index.py, tree.py, clock_skew.py and critical_path.py
stay the reference and the fallback (the extension is not built without cargo;
`HOPSCOPE_NATIVE=0` turns it off for comparisons).
tests/unit/test_analysis_kernels.py checks both give the same arrays.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    import hopscope_analysis_native as _native
except ImportError:  # not built: bin/bootstrap builds it where cargo is available
    _native = None

from hopscope.core.native import note_fallback, turned_off


class SpanTree(Protocol):
    """What the kernels read of span_arrays.SpanArrays (named here, not imported: the span
    arrays call the kernels)."""

    event_parent: np.ndarray
    parent: np.ndarray
    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray
    host: np.ndarray
    hop: np.ndarray
    hop_names: np.ndarray


AVAILABLE = _native is not None and not turned_off()


def fallback() -> None:
    """Called where the numpy path runs instead: says so once (core/native.py) when the
    extension is missing, not when HOPSCOPE_NATIVE=0 turned it off."""
    if _native is None:
        note_fallback()


_THREADS = min(2, os.cpu_count() or 1)


def _i64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _chunk(c: pa.Array) -> tuple:
    """A string array as the kernel takes it: (validity bitmap or None, bit offset, offsets, data)."""
    valid, offsets, data = c.buffers()
    return (
        np.frombuffer(valid, np.uint8) if valid is not None and c.null_count else None,
        c.offset,
        np.frombuffer(offsets, np.int32)[c.offset : c.offset + len(c) + 1],
        np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8),
    )


def _chunks(col: pa.ChunkedArray | pa.Array) -> list[tuple] | None:
    """A string column's chunks as the kernel takes them, None for another type."""
    out = []
    for c in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        if c.type != pa.string():
            return None
        if len(c):
            out.append(_chunk(c))
    return out


def _trace_chunks(col: pa.ChunkedArray | pa.Array) -> list[tuple] | None:
    """Trace ids as (indices or None, strings) per chunk: plain, or dictionary-encoded as the
    Parquet file stores them (then each distinct id is parsed once per chunk)."""
    out: list[tuple] = []
    for c in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        if len(c) == 0:
            continue
        if c.type == pa.string():
            out.append((None, _chunk(c)))
        elif c.type == pa.dictionary(pa.int32(), pa.string()):
            ix = c.indices
            valid, data = ix.buffers()
            bits = np.frombuffer(valid, np.uint8) if valid is not None and ix.null_count else None
            indices = np.frombuffer(data, np.int32)[ix.offset : ix.offset + len(ix)]
            out.append(((bits, ix.offset, indices), _chunk(c.dictionary)))
        else:
            return None
    return out


_INDEX_FIELDS = {
    "keep": np.int64,
    "trace": np.int64,
    "span_key": np.int64,
    "parent": np.int64,
    "has_parent_id": bool,
    "link_parent": np.int64,
    "trace_lo": np.int64,
    "trace_hi": np.int64,
    "duplicates": np.int64,
}


class IdIndexBuilder:
    """The id index built batch by batch (prepare() feeds it a Parquet row group at a time,
    so the id strings of the whole file are never held at once): id_index.IdIndex's fields but
    `span_id_col` from `finish()`, or None once an id is not lower-case hex of full width
    (the numpy path handles every spelling)."""

    def __init__(self, rows: int = 0) -> None:
        """`rows`: the rows all batches hold together, when known (room is made once)."""
        assert _native is not None
        self._builder = _native.IndexBuilder(rows)
        self.declined = False

    def add(
        self,
        trace_id: pa.ChunkedArray,
        span_id: pa.ChunkedArray,
        parent_span_id: pa.ChunkedArray,
        links: pa.ChunkedArray,
    ) -> bool:
        """Parse one batch of rows; False (and from then on) when the kernel declines them."""
        if self.declined:
            return False
        link_trace: list[pa.Array] = []
        link_span: list[pa.Array] = []
        link_rows: list[np.ndarray] = []
        base = 0
        for chunk in links.chunks if isinstance(links, pa.ChunkedArray) else [links]:
            flat = pc.list_flatten(chunk)  # chunk by chunk: joining the chunks first copies every link
            link_trace.append(flat.field("trace_id"))
            link_span.append(flat.field("span_id"))
            link_rows.append(pc.list_parent_indices(chunk).to_numpy().astype(np.int64) + base)
            base += len(chunk)
        cols = [
            _trace_chunks(trace_id),
            *map(
                _chunks,
                (
                    span_id,
                    parent_span_id,
                    pa.chunked_array(link_trace, pa.string()),
                    pa.chunked_array(link_span, pa.string()),
                ),
            ),
        ]
        rows = np.concatenate(link_rows) if link_rows else np.zeros(0, np.int64)
        self.declined = any(c is None for c in cols) or not self._builder.add(*cols, rows)
        return not self.declined

    def finish(self) -> dict | None:
        out = None if self.declined else self._builder.finish()
        if out is None:
            return None
        arrays = {name: np.frombuffer(out[name], dtype=dtype) for name, dtype in _INDEX_FIELDS.items()}
        hex_ids = np.frombuffer(out["trace_hex"], np.uint8)
        n = len(hex_ids) // 32
        offsets = pa.py_buffer(np.arange(0, 32 * (n + 1), 32, dtype=np.int32))
        return {**arrays, "trace_names": pa.StringArray.from_buffers(n, offsets, pa.py_buffer(hex_ids))}


def index_spans(
    trace_id: pa.ChunkedArray,
    span_id: pa.ChunkedArray,
    parent_span_id: pa.ChunkedArray,
    links: pa.ChunkedArray,
) -> dict | None:
    """The id index of whole columns (one batch); see IdIndexBuilder."""
    builder = IdIndexBuilder(len(trace_id))
    builder.add(trace_id, span_id, parent_span_id, links)
    return builder.finish()


def event_roots(sa: SpanTree) -> np.ndarray:
    """The root above each span of the event tree (itself for a root), -1 where none is reached."""
    assert _native is not None
    return np.frombuffer(_native.event_roots(_i64(sa.event_parent)), dtype=np.int64)


def skew_shifts(sa: SpanTree) -> tuple[np.ndarray, np.ndarray]:
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
    sa: SpanTree,
    targets: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    n_labels: int,
    ids: np.ndarray | None = None,
    origin: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """hops.PathSums.result() of the event-mode walk from each target:
    (walker, label int32, total ns, first start ns), ordered by walker then label, then each
    walker's path total and row count (uint32). With `ids` and `origin` (per target), walker
    w reads ids[w] and its first starts are given relative to origin[w]."""
    assert _native is not None
    walker, label, total, first, path, rows = _native.event_path_sums(
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
        ids=None if ids is None else _i64(ids),
        origin=None if origin is None else _i64(origin),
    )
    return (
        np.frombuffer(walker, dtype=np.int64),
        np.frombuffer(label, dtype=np.int32),
        np.frombuffer(total, dtype=np.int64),
        np.frombuffer(first, dtype=np.int64),
        np.frombuffer(path, dtype=np.int64),
        np.frombuffer(rows, dtype=np.uint32),
    )
