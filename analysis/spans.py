"""Turn the flat span table into numpy arrays the vectorised analysis walks.

Everything here is columnar: spans are sorted by trace, span ids become integers,
parents are resolved with a segmented binary search, and the tree is stored as
CSR child lists. No Python loop runs over traces or spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KIND_CODES = {"UNSPECIFIED": 0, "INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
PRODUCER = KIND_CODES["PRODUCER"]
CONSUMER = KIND_CODES["CONSUMER"]
ATTR_SUBSCRIBER = "hopscope.subscriber"
HOST_KEYS = ("host.id", "host.ip", "host.name")

#: Columns the analysis reads (the rest of SPAN_SCHEMA is left on disk).
NEEDED_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "links",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "service",
    "stack",
    "workload",
    "event_id",
    "hop",
    "derived",
    "attributes",
    "resource",
)


@dataclass
class SpanArrays:
    """Spans sorted by (trace, span id), duplicates removed, as parallel numpy arrays."""

    trace: np.ndarray  # int64 trace code, sorted ascending
    trace_id_arrow: pa.Array  # trace id string per dense trace code
    trace_lo: np.ndarray  # first span index of each trace code
    trace_hi: np.ndarray  # one past the last span index
    span_id_source: tuple[pa.ChunkedArray, np.ndarray]  # (file column, file row per span)
    parent: np.ndarray  # int64 index of the parent span in the same trace, -1 if none found
    has_parent_id: np.ndarray  # bool: the span names a parent (so -1 there means orphan)
    link_parent: np.ndarray  # int64 index of a same-trace linked span, -1 if none
    start: np.ndarray  # int64 ns
    end: np.ndarray  # int64 ns
    kind: np.ndarray  # int8, KIND_CODES
    hop: np.ndarray  # int32 code into hop_names (hop attribute, else span name)
    hop_names: np.ndarray  # object
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
        return col.take(pa.array(keep)).to_numpy(zero_copy_only=False).astype(object)

    @cached_property
    def trace_ids(self) -> np.ndarray:
        return self.trace_id_arrow.to_numpy(zero_copy_only=False).astype(object)

    @property
    def n(self) -> int:
        return len(self.start)

    @property
    def n_traces(self) -> int:
        return len(self.trace_ids)


def _codes(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode a string column: (int32 codes with -1 for null, dictionary values)."""
    codes, dictionary = _codes_arrow(arr)
    return codes, dictionary.to_numpy(zero_copy_only=False).astype(object)


def _codes_arrow(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Like _codes, with the dictionary left as an Arrow array (for columns with millions of values)."""
    enc = pc.dictionary_encode(arr)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.unify_dictionaries()
        dictionary = enc.chunk(0).dictionary if enc.num_chunks else pa.array([], pa.string())
        indices = pa.chunked_array([c.indices for c in enc.chunks], type=pa.int32())
        indices = indices.combine_chunks() if indices.num_chunks else pa.array([], pa.int32())
    else:
        dictionary, indices = enc.dictionary, enc.indices
    codes = indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return codes, dictionary


def _hex_u64(arr: pa.Array) -> np.ndarray | None:
    """Parse 16-char lower-case hex ids to uint64 without a Python loop; None if not all are."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if arr.null_count or len(arr) == 0:
        return None
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    if not np.all(np.diff(offsets) == 16):
        return None
    raw = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    # bytes.fromhex parses the whole buffer in C; it skips ASCII whitespace, which the length check catches.
    try:
        packed = bytes.fromhex(raw.tobytes().decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if len(packed) != 8 * len(arr):
        return None
    return np.frombuffer(packed, dtype=">u8").astype(np.uint64)


def _id_keys(ids: pa.ChunkedArray, parents: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Integer keys for span ids and parent ids, comparable with each other; True if hex-parsed."""
    ids_c = ids.combine_chunks()
    u = _hex_u64(ids_c)
    par_c = parents.combine_chunks()
    if u is not None:
        filled = pc.fill_null(par_c, "0000000000000000")
        pu = _hex_u64(filled)
        if pu is not None:
            return u.view(np.int64), pu.view(np.int64), True
    # Non-hex ids (conformance cases, foreign readers): a shared dictionary gives codes.
    codes, _values = _codes(pa.concat_arrays([ids_c.cast(pa.string()), par_c.cast(pa.string())]))
    n = len(ids_c)
    return codes[:n].astype(np.int64), codes[n:].astype(np.int64), False


def segmented_search(
    keys: np.ndarray, lo: np.ndarray, hi: np.ndarray, query: np.ndarray, side: str = "left"
) -> np.ndarray:
    """Vectorised np.searchsorted of query[i] inside keys[lo[i]:hi[i]] (each segment sorted)."""
    lo = lo.astype(np.int64, copy=True)
    hi = hi.astype(np.int64, copy=True)
    if len(lo) == 0:
        return lo
    while True:
        active = lo < hi
        if not active.any():
            return lo
        idx = np.flatnonzero(active)
        mid = (lo[idx] + hi[idx]) // 2
        k = keys[mid]
        go_right = k < query[idx] if side == "left" else k <= query[idx]
        lo[idx[go_right]] = mid[go_right] + 1
        hi[idx[~go_right]] = mid[~go_right]


def _lookup_codes(col: pa.ChunkedArray, key: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1 where absent) and dictionary of a map<string,string> column's value under `key`."""
    none = (np.full(n, -1, np.int32), np.asarray([], dtype=object))
    if n == 0 or col.null_count == n:
        return none
    arr = col.combine_chunks()
    off = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    keys, items = arr.keys, arr.items
    if len(keys) != off[-1] - off[0]:
        keys, items = keys.slice(off[0], off[-1] - off[0]), items.slice(off[0], off[-1] - off[0])
    if len(keys) == 0:
        return none
    hit = pc.equal(keys, key).fill_null(False)
    if not pc.any(hit).as_py():
        return none
    # Row of each hit by binary search in the offsets: no per-entry row array is built.
    hit_pos = np.flatnonzero(hit.to_numpy(zero_copy_only=False)) + off[0]
    rows = np.searchsorted(off, hit_pos, side="right") - 1
    vcodes, names = _codes(items.filter(hit))
    codes = np.full(n, -1, np.int32)
    codes[rows] = vcodes
    return codes, names


def _per_trace_name(codes: np.ndarray, names: np.ndarray, trace_lo: np.ndarray) -> np.ndarray:
    """One name per trace: the largest code seen in the trace (spans without one are -1)."""
    if len(codes) == 0:
        return np.asarray([], dtype=object)
    best = np.maximum.reduceat(codes, trace_lo) if len(trace_lo) else np.asarray([], np.int32)
    lookup = np.append(names, "").astype(object)
    return lookup[np.where(best >= 0, best, len(names))]


def _merged_codes(primary: pa.ChunkedArray, fallback: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of coalesce(primary, fallback) over one merged dictionary (-1 where both are null)."""
    pc_, pn = _codes(primary)
    fc, fn = _codes(fallback)
    names = np.asarray(sorted(set(pn.tolist()) | set(fn.tolist())), dtype=object)
    index = {v: i for i, v in enumerate(names.tolist())}
    pmap = np.array([index[v] for v in pn.tolist()] + [-1], dtype=np.int32)
    fmap = np.array([index[v] for v in fn.tolist()] + [-1], dtype=np.int32)
    out = np.where(pc_ >= 0, pmap[pc_], fmap[fc])
    return out.astype(np.int32), names


class ParquetColumns:
    """A span Parquet file read one column at a time, so only one Arrow column is alive at once."""

    DICTIONARY = ("trace_id", "name", "kind", "service", "stack", "workload", "hop", "event_id")

    def __init__(self, path: str) -> None:
        import pyarrow.parquet as pq

        self._file = pq.ParquetFile(path)
        self.column_names = self._file.schema_arrow.names
        self.num_rows = self._file.metadata.num_rows
        self.path = path

    def column(self, name: str) -> pa.ChunkedArray:
        import pyarrow.parquet as pq

        from hopscope.collector.schema import SPAN_SCHEMA

        if name not in self.column_names:
            f = SPAN_SCHEMA.field(name)
            return pa.chunked_array([pa.nulls(self.num_rows, f.type)])
        dictionary = [name] if name in self.DICTIONARY else []
        return pq.read_table(self.path, columns=[name], read_dictionary=dictionary).column(0)


def prepare(table: pa.Table | ParquetColumns) -> SpanArrays:
    """Sort, deduplicate and index the span table; count what is broken per trace.

    Columns are dictionary-encoded once in file order and then reordered as integer
    codes, so no string column is ever sorted or gathered.
    """
    n0 = table.num_rows
    trace_codes, trace_names = _codes_arrow(table.column("trace_id"))
    span_id_col = table.column("span_id")
    parent_col = table.column("parent_span_id")
    span_key, parent_key, hex_ids = _id_keys(span_id_col, parent_col)
    has_pid = np.asarray(
        pc.fill_null(pc.not_equal(parent_col, ""), False).to_numpy(zero_copy_only=False), dtype=bool
    )
    del parent_col

    order = np.lexsort((span_key, trace_codes))
    tr = trace_codes[order].astype(np.int64)
    sk = span_key[order]
    dup = np.zeros(n0, dtype=bool)
    if n0 > 1:
        dup[1:] = (tr[1:] == tr[:-1]) & (sk[1:] == sk[:-1])
    keep = order[~dup]
    dup_per_trace = np.bincount(tr[dup], minlength=len(trace_names))
    tr = tr[~dup]
    sk = sk[~dup]
    n = len(keep)
    pk = parent_key[keep]
    hp = has_pid[keep]
    where = np.full(n0, -1, np.int64)  # file row -> sorted position (duplicates map to -1)
    where[keep] = np.arange(n)
    del order, span_key, parent_key, has_pid, trace_codes, dup  # 10M-row temporaries: keep the peak low

    # Dense trace codes in sorted order; every trace keeps at least one span after dedup.
    uniq = np.unique(tr)
    seg_of = np.searchsorted(uniq, tr)
    bounds = np.flatnonzero(np.diff(tr)) + 1
    trace_lo = np.concatenate([[0], bounds]).astype(np.int64) if n else np.zeros(0, np.int64)
    trace_hi = np.concatenate([bounds, [n]]).astype(np.int64) if n else np.zeros(0, np.int64)
    pos = segmented_search(sk, trace_lo[seg_of], trace_hi[seg_of], pk)
    pos_ok = pos < trace_hi[seg_of]
    found = np.zeros(n, dtype=bool)
    found[pos_ok] = sk[pos[pos_ok]] == pk[pos_ok]
    parent = np.where(found & hp, pos, -1).astype(np.int64)
    orphan = hp & ~found
    del pos, pos_ok, found, pk

    start = table.column("start_ns").to_numpy().astype(np.int64, copy=False)[keep]
    end = table.column("end_ns").to_numpy().astype(np.int64, copy=False)[keep]
    negative = end < start
    end = np.where(negative, start, end)

    kind_codes, kind_names = _codes(table.column("kind"))
    kind_map = np.array([KIND_CODES.get(str(k).upper(), 0) for k in kind_names] + [1], dtype=np.int8)
    kind = kind_map[np.where(kind_codes >= 0, kind_codes, len(kind_names))][keep]

    hop, hop_names = _merged_codes(table.column("hop"), table.column("name"))
    hop = np.where(hop >= 0, hop, len(hop_names)).astype(np.int32)[keep]
    hop_names = np.append(hop_names, "(unnamed)").astype(object)

    service, service_names = _codes(table.column("service"))
    host = service.copy()
    res = table.column("resource")
    offset = len(service_names) + 1
    for key in HOST_KEYS:
        codes, names = _lookup_codes(res, key, n0)
        host = np.where((codes >= 0) & (host < offset), codes + offset, host)
        offset += len(names) + 1
    service, host = service[keep], host[keep]
    derived = np.asarray(table.column("derived").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)[
        keep
    ]
    subscriber, subscriber_names = _lookup_codes(table.column("attributes"), ATTR_SUBSCRIBER, n0)
    subscriber = subscriber[keep]

    link_parent = np.full(n, -1, dtype=np.int64)
    links = table.column("links").combine_chunks()
    flat = pc.list_flatten(links)
    if len(flat):
        rows_file = pc.list_parent_indices(links).to_numpy()
        ltr = pc.index_in(flat.field("trace_id"), value_set=trace_names.cast(pa.string()))
        ltr = ltr.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        rows = where[rows_file]
        same = (rows >= 0) & (ltr == tr[np.maximum(rows, 0)])
        if same.any():
            rows = rows[same]
            lk_arr = flat.field("span_id").filter(pa.array(same))
            lk = _hex_u64(lk_arr) if hex_ids else None
            if lk is None:
                span_strs = span_id_col.to_numpy(zero_copy_only=False)[keep]
                for r, sid in zip(rows.tolist(), lk_arr.to_pylist(), strict=True):
                    lo_, hi_ = trace_lo[seg_of[r]], trace_hi[seg_of[r]]
                    hits = np.flatnonzero(span_strs[lo_:hi_] == sid)
                    if len(hits) and lo_ + hits[0] != r and link_parent[r] < 0:
                        link_parent[r] = lo_ + hits[0]
            else:
                lk = lk.view(np.int64)
                lpos = segmented_search(sk, trace_lo[seg_of[rows]], trace_hi[seg_of[rows]], lk)
                ok = lpos < trace_hi[seg_of[rows]]
                ok[ok] = sk[lpos[ok]] == lk[ok]
                ok &= lpos != rows
                # a span's first link wins: write in reverse so earlier links overwrite later ones
                link_parent[rows[ok][::-1]] = lpos[ok][::-1]

    dense = seg_of
    stack_c, stack_n = _codes(table.column("stack"))
    work_c, work_n = _codes(table.column("workload"))
    ev_c, ev_n = _codes_arrow(table.column("event_id"))
    ev_best = np.maximum.reduceat(ev_c[keep], trace_lo) if n else np.zeros(0, np.int32)
    trace_event = (
        pc.take(ev_n, pa.array(np.where(ev_best >= 0, ev_best, 0)))
        if len(ev_n)
        else pa.nulls(len(uniq), pa.string())
    )
    if len(ev_n):
        trace_event = pc.if_else(pa.array(ev_best >= 0), trace_event, pa.scalar(None, trace_event.type))

    counts = {
        "duplicate_span_ids": dup_per_trace[uniq],
        "orphan_spans": np.bincount(dense[orphan], minlength=len(uniq)),
        "negative_durations": np.bincount(dense[negative], minlength=len(uniq)),
        "true_roots": np.bincount(dense[~hp], minlength=len(uniq)),
    }
    return SpanArrays(
        trace=dense.astype(np.int64),
        trace_id_arrow=trace_names.take(pa.array(uniq)).cast(pa.string()),
        trace_lo=trace_lo,
        trace_hi=trace_hi,
        span_id_source=(span_id_col, keep),
        parent=parent,
        has_parent_id=hp,
        link_parent=link_parent,
        start=start,
        end=end,
        kind=kind,
        hop=hop,
        hop_names=hop_names,
        host=host.astype(np.int32),
        service=service,
        service_names=service_names,
        derived=derived,
        subscriber=subscriber,
        subscriber_names=subscriber_names,
        trace_stack=_per_trace_name(stack_c[keep], stack_n, trace_lo),
        trace_workload=_per_trace_name(work_c[keep], work_n, trace_lo),
        trace_event_arrow=trace_event.cast(pa.string()),
        counts=counts,
    )
