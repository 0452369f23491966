"""`SpanArrays`: the span table as sorted, deduplicated, indexed numpy arrays — what every
later step (fold, clock skew, deliveries, critical paths, quality) reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa

from . import kernels
from .columns import hex_strings
from .tree import gather_segments, levels, top_of

KIND_CODES = {"UNSPECIFIED": 0, "INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}

PRODUCER = KIND_CODES["PRODUCER"]

CONSUMER = KIND_CODES["CONSUMER"]

#: SpanArrays fields with one value per span that need no re-indexing when spans are dropped
#: (`parent` and `link_parent` hold span indices and do)
PER_SPAN_VALUES = (
    "trace",
    "has_parent_id",
    "start",
    "end",
    "kind",
    "hop",
    "name",
    "host",
    "service",
    "derived",
    "subscriber",
)


@dataclass
class SpanArrays:
    """Spans sorted by (trace, span id), duplicates removed, as parallel numpy arrays."""

    trace: np.ndarray  # int64 trace code, sorted ascending
    trace_id_arrow: pa.Array  # trace id string per dense trace code
    trace_lo: np.ndarray  # first span index of each trace code
    trace_hi: np.ndarray  # one past the last span index
    # (file column, file row per span), or (None, int64 span id keys in span order) for lower-case hex ids
    span_id_source: tuple[pa.ChunkedArray | None, np.ndarray]
    parent: np.ndarray  # int64 index of the parent span in the same trace, -1 if none found
    has_parent_id: np.ndarray  # bool: the span names a parent (so -1 there means orphan)
    link_parent: np.ndarray  # int64 index of a same-trace linked span, -1 if none
    start: np.ndarray  # int64 ns
    end: np.ndarray  # int64 ns
    kind: np.ndarray  # int8, KIND_CODES
    hop: np.ndarray  # int32 code into hop_names (hop attribute, else span name)
    hop_names: np.ndarray  # object
    name: np.ndarray  # int32 code into hop_names: the span's own name
    host: np.ndarray  # int32 code: host key (resource host.*, else service)
    service: np.ndarray  # int32 code into service_names
    service_names: np.ndarray
    derived: np.ndarray  # bool
    subscriber: np.ndarray  # int32 code into subscriber_names, -1 when absent
    subscriber_names: np.ndarray
    trace_stack: np.ndarray  # per trace: object stack name ("" if unknown)
    trace_workload: np.ndarray
    trace_event_arrow: pa.Array  # event id per trace (null if no span names one)
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # per-trace problem counts

    @cached_property
    def span_ids(self) -> np.ndarray:
        """Span id strings in span order (materialised only when asked for)."""
        col, keep = self.span_id_source
        if col is None:  # lower-case hex ids: spelled again from their 64-bit keys (span order)
            return hex_strings(keep.view(np.uint64)).to_numpy(zero_copy_only=False).astype(object)
        return col.take(pa.array(keep)).to_numpy(zero_copy_only=False).astype(object)

    def span_ids_at(self, idx: np.ndarray) -> np.ndarray:
        """The id strings of the spans at `idx` only (span_ids spells every span's)."""
        col, keep = self.span_id_source
        if col is None:
            return hex_strings(keep[idx].view(np.uint64)).to_numpy(zero_copy_only=False).astype(object)
        return col.take(pa.array(keep[idx])).to_numpy(zero_copy_only=False).astype(object)

    @cached_property
    def event_parent(self) -> np.ndarray:
        """Parent in the event tree: the parent span, else a same-trace linked span (-1: none)."""
        return np.where(self.parent >= 0, self.parent, self.link_parent)

    @cached_property
    def event_levels(self) -> list[np.ndarray]:
        """Spans by depth in the event tree (computed once: skew, deliveries and paths all walk it)."""
        return levels(self.event_parent, np.ones(self.n, dtype=bool))

    @cached_property
    def event_top(self) -> np.ndarray:
        """The root above each span in the event tree (itself for a root), -1 if none is reached."""
        if kernels.AVAILABLE:
            return kernels.event_roots(self)
        return top_of(self.event_parent, self.event_levels)

    @cached_property
    def trace_ids(self) -> np.ndarray:
        return self.trace_id_arrow.to_numpy(zero_copy_only=False).astype(object)

    @property
    def n(self) -> int:
        return len(self.start)

    @property
    def n_traces(self) -> int:
        return len(self.trace_id_arrow)  # not trace_ids: that makes a Python string per trace


def select_traces(sa: SpanArrays, traces: np.ndarray) -> tuple[SpanArrays, np.ndarray]:
    """The spans of `traces` only (trace codes, in that order) as SpanArrays of their own, and
    each kept span's index in `sa`. A trace's spans are contiguous and name parents and links
    in their own trace only, so the walks on the result are those of `sa` on these traces."""
    traces = np.asarray(traces, dtype=np.int64)
    lo, hi = sa.trace_lo[traces], sa.trace_hi[traces]
    idx, owner = gather_segments(lo, hi)
    sizes = hi - lo
    new_hi = np.cumsum(sizes).astype(np.int64)
    new_lo = new_hi - sizes
    shift = (new_lo - lo)[owner]

    def moved(ix: np.ndarray) -> np.ndarray:
        return np.where(ix >= 0, ix + shift, -1)

    col, key = sa.span_id_source
    take = pa.array(traces)
    per_span = {name: getattr(sa, name)[idx] for name in PER_SPAN_VALUES}
    per_span["trace"] = owner.astype(np.int64)
    sub = dataclasses.replace(
        sa,
        **per_span,
        trace_id_arrow=sa.trace_id_arrow.take(take),
        trace_lo=new_lo,
        trace_hi=new_hi,
        span_id_source=(col, key[idx]),
        parent=moved(sa.parent[idx]),
        link_parent=moved(sa.link_parent[idx]),
        trace_stack=sa.trace_stack[traces],
        trace_workload=sa.trace_workload[traces],
        trace_event_arrow=sa.trace_event_arrow.take(take),
        counts={},
    )
    return sub, idx
