"""prepare(): the flat span table → `SpanArrays` (id index, then the other columns as codes,
then library spans folded). Everything is columnar: no Python loop runs over traces or spans.

The steps live below it: span_file.py (reading), columns.py (Arrow → numpy), id_index.py
(order, parents, links), span_arrays.py (the result), fold.py (library spans).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hopscope.core.attributes import ATTR_SUBSCRIBER

from .columns import dict_codes, dict_codes_arrow, lookup_codes, merged_codes, per_trace_name
from .fold import fold_library_spans
from .id_index import build_index
from .span_arrays import KIND_CODES, SpanArrays
from .span_file import ParquetColumns

HOST_KEYS = ("host.id", "host.ip", "host.name")


def _trace_events(col: pa.ChunkedArray, keep: np.ndarray, trace_lo: np.ndarray, n_traces: int) -> pa.Array:
    """The event id of each trace: of its kept spans' values, the one with the largest code."""
    n = len(keep)
    ev_c, ev_n = dict_codes_arrow(col)
    ev_best = np.maximum.reduceat(ev_c[keep], trace_lo) if n else np.zeros(0, np.int32)
    trace_event = (
        pc.take(ev_n, pa.array(np.where(ev_best >= 0, ev_best, 0)))
        if len(ev_n)
        else pa.nulls(n_traces, pa.string())
    )
    if len(ev_n):
        trace_event = pc.if_else(pa.array(ev_best >= 0), trace_event, pa.scalar(None, trace_event.type))
    return trace_event.cast(pa.string())


def _times_and_hops(
    table: pa.Table | ParquetColumns, keep: np.ndarray
) -> tuple[dict, np.ndarray, np.ndarray]:
    """SpanArrays' fields start, end (clipped to start), kind, hop, hop names and name per kept
    span; then where the duration was negative and where the hop came from the attribute."""
    start = table.column("start_ns").to_numpy().astype(np.int64, copy=False)[keep]
    end = table.column("end_ns").to_numpy().astype(np.int64, copy=False)[keep]
    negative = end < start
    end = np.where(negative, start, end)

    kind_codes, kind_names = dict_codes(table.column("kind"))
    kind_map = np.array([KIND_CODES.get(str(k).upper(), 0) for k in kind_names] + [1], dtype=np.int8)
    kind = kind_map[np.where(kind_codes >= 0, kind_codes, len(kind_names))][keep]

    hop, hop_names, hop_attr, name = merged_codes(table.column("hop"), table.column("name"))
    unnamed = len(hop_names)
    hop = np.where(hop >= 0, hop, unnamed).astype(np.int32)[keep]
    # the span's own name, over the same dictionary (a waterfall row shows it beside the hop)
    name = np.where(name >= 0, name, unnamed).astype(np.int32)[keep]
    fields = {
        "start": start,
        "end": end,
        "kind": kind,
        "hop": hop,
        "hop_names": np.append(hop_names, "(unnamed)").astype(object),
        "name": name,
    }
    return fields, negative, hop_attr[keep]


def _placements(table: pa.Table | ParquetColumns, keep: np.ndarray) -> dict:
    """SpanArrays' fields saying where a span ran: service, host, derived, subscriber."""
    service, service_names = dict_codes(table.column("service"))
    host = service.copy()
    res = table.column("resource")
    offset = len(service_names) + 1
    for key in HOST_KEYS:
        codes, names = lookup_codes(res, key, table.num_rows)
        host = np.where((codes >= 0) & (host < offset), codes + offset, host)
        offset += len(names) + 1
    del res
    derived = np.asarray(table.column("derived").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    subscriber, subscriber_names = lookup_codes(table.column("attributes"), ATTR_SUBSCRIBER, table.num_rows)
    return {
        "service": service[keep],
        "service_names": service_names,
        "host": host[keep].astype(np.int32),
        "derived": derived[keep],
        "subscriber": subscriber[keep],
        "subscriber_names": subscriber_names,
    }


def _memberships(table: pa.Table | ParquetColumns, keep: np.ndarray, trace_lo: np.ndarray) -> dict:
    """SpanArrays' per-trace fields: stack, workload and event id."""
    stack_c, stack_n = dict_codes(table.column("stack"))
    work_c, work_n = dict_codes(table.column("workload"))
    return {
        "trace_stack": per_trace_name(stack_c[keep], stack_n, trace_lo),
        "trace_workload": per_trace_name(work_c[keep], work_n, trace_lo),
        "trace_event_arrow": _trace_events(table.column("event_id"), keep, trace_lo, len(trace_lo)),
    }


def prepare(table: pa.Table | ParquetColumns) -> SpanArrays:
    """Sort, deduplicate and index the span table; count what is broken per trace.

    The id columns become an IdIndex: natively when analysis/native is built and the ids are
    spelled as the readers write them (from a Parquet file, fed a row group at a time while
    the next is read, so the id strings are never all held), else with numpy
    (`_numpy_index`: hex ids parsed to 64-bit integers, spans sorted once by one composite
    integer key (trace code, span id), parents and links found by one binary search in it;
    any other id spelling takes the general string-coded path). All give the same arrays. Other columns are
    dictionary-encoded once in file order and then reordered as integer codes, so no string
    column is ever sorted or gathered.
    """
    ix = build_index(table)
    keep, hp, trace_lo = ix.keep, ix.has_parent_id, ix.trace_lo
    orphan = hp & (ix.parent < 0)
    # the other columns in three parts side by side (numpy and Arrow let go of the GIL in their
    # loops): at 10 M spans each part is ~1 s of whole-array passes
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare") as pool:
        placements = pool.submit(_placements, table, keep)
        memberships = pool.submit(_memberships, table, keep, trace_lo)
        times, negative, hop_attr = _times_and_hops(table, keep)
        org = {**times, **placements.result(), **memberships.result()}

    counts = {
        "duplicate_span_ids": ix.duplicates,
        "orphan_spans": np.bincount(ix.trace[orphan], minlength=len(trace_lo)),
        "negative_durations": np.bincount(ix.trace[negative], minlength=len(trace_lo)),
        # a span without a parent that links to a span of its trace continues that span's event
        # (a consumer joined to its producer's trace, foreign.py): not a root of its own
        "true_roots": np.bincount(ix.trace[~hp & (ix.link_parent < 0)], minlength=len(trace_lo)),
    }
    arrays = SpanArrays(
        trace=ix.trace,
        trace_id_arrow=ix.trace_names,
        trace_lo=trace_lo,
        trace_hi=ix.trace_hi,
        span_id_source=(ix.span_id_col, keep if ix.span_id_col is not None else ix.span_key),
        parent=ix.parent,
        has_parent_id=hp,
        link_parent=ix.link_parent,
        counts=counts,
        **org,
    )
    return fold_library_spans(arrays, hop_attr)
