"""Turn the flat span table into numpy arrays the vectorised analysis walks.

Everything here is columnar: spans are sorted by trace, span ids become integers,
parents are resolved with a segmented binary search, and the tree is stored as
CSR child lists. No Python loop runs over traces or spans.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hopscope.core.ids import hex_u64

from .fold import fold_library_spans
from .tree import levels, top_of

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


#: SpanArrays fields with one value per span that need no re-indexing when spans are dropped
#: (`parent` and `link_parent` hold span indices and do)
PER_SPAN_VALUES = (
    "trace",
    "has_parent_id",
    "start",
    "end",
    "kind",
    "hop",
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
            return _hex_strings(keep.view(np.uint64)).to_numpy(zero_copy_only=False).astype(object)
        return col.take(pa.array(keep)).to_numpy(zero_copy_only=False).astype(object)

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
        from . import kernels  # kernels imports this module for its types

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


def _codes(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode a string column: (int32 codes with -1 for null, dictionary values)."""
    codes, dictionary = _codes_arrow(arr)
    return codes, dictionary.to_numpy(zero_copy_only=False).astype(object)


def _codes_arrow(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Like _codes, with the dictionary left as an Arrow array (for columns with millions of values).

    Codes number the values by first appearance; a column read dictionary-encoded keeps its codes.
    """
    if isinstance(arr, pa.ChunkedArray) and arr.num_chunks == 1:
        arr = arr.chunk(0)
    enc = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
    if isinstance(enc, pa.ChunkedArray):
        return _unified_codes(enc)
    indices = enc.indices.fill_null(-1) if enc.indices.null_count else enc.indices
    return indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), enc.dictionary


def _unified_codes(enc: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Codes over one dictionary for the chunks of a dictionary column (-1 for null), as
    unify_dictionaries numbers them: values by first appearance in the chunks' dictionaries.

    A Parquet row group is read as many chunks that share its dictionary; unify_dictionaries
    hashes that dictionary once per chunk (7.7 M strings for 10 M spans of 1 M event ids), so
    each distinct dictionary is encoded once here and its chunks map through it.
    """
    distinct: dict[tuple, int] = {}
    dictionaries: list[pa.Array] = []
    which: list[int] = []
    for chunk in enc.chunks:
        d = chunk.dictionary
        key = (tuple(b.address if b is not None else 0 for b in d.buffers()), d.offset, len(d))
        if key not in distinct:
            distinct[key] = len(dictionaries)
            dictionaries.append(d)
        which.append(distinct[key])
    if not dictionaries:
        return np.zeros(0, np.int32), pa.array([], pa.string())
    merged = pc.dictionary_encode(pa.concat_arrays(dictionaries))
    global_code = merged.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    starts = np.cumsum([0] + [len(d) for d in dictionaries])
    # one table per dictionary; its extra last slot, -1, is where a null index (-1) lands
    maps = [np.append(global_code[a:b], -1).astype(np.int32) for a, b in pairwise(starts)]
    parts = []
    for chunk, k in zip(enc.chunks, which, strict=True):
        idx = chunk.indices
        local = (idx.fill_null(-1) if idx.null_count else idx).to_numpy(zero_copy_only=False)
        parts.append(maps[k][local])  # -1 indexes the table's last slot: null stays -1
    return np.concatenate(parts), merged.dictionary


_SIGN = np.uint64(1 << 63)


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_strings(words: np.ndarray) -> pa.Array:
    """Lower-case hex strings of uint64 values (16 digits), or of rows of words (16 per word)."""
    words = words.reshape(len(words), -1)
    n, width = len(words), 16 * words.shape[1]
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    chars = _HEX_DIGITS[((words[:, :, None] >> shifts) & np.uint64(15)).astype(np.intp)]
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * width).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(np.ascontiguousarray(chars).tobytes()))


@dataclass
class HexWords:
    """Hex ids parsed to big-endian 64-bit words (one row per id of the full width)."""

    words: np.ndarray  # uint64, shape (rows with an id, n_words)
    present: np.ndarray | None  # bool per input row: it holds an id (None: every row does)
    has_upper: bool  # some id was written with upper-case hex digits


def _string_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    return arr


def _hex_words(arr: pa.Array | pa.ChunkedArray, n_words: int, *, lower_only: bool = False) -> HexWords | None:
    """Parse ids of exactly 16 * n_words hex digits with numpy (no Python loop over rows).

    Null rows hold no id (`present`); any other spelling (empty, wrong length, a non-hex
    digit, upper case when `lower_only`) returns None and the caller takes the general path.
    A column of several chunks (Parquet row groups) is parsed chunk by chunk: joining the
    chunks first would copy every id once more.
    """
    if isinstance(arr, pa.ChunkedArray) and arr.num_chunks > 1:
        parts: list[tuple[int, HexWords | None]] = []
        for chunk in arr.chunks:
            if len(chunk) == 0:
                continue
            if chunk.null_count == len(chunk):  # no id in this chunk at all
                parts.append((len(chunk), None))
                continue
            hw = _hex_words_one(chunk, n_words, lower_only)
            if hw is None:
                return None
            parts.append((len(chunk), hw))
        if not any(hw is not None for _, hw in parts):
            return None
        words = np.concatenate(
            [hw.words if hw is not None else np.zeros((0, n_words), np.uint64) for _, hw in parts]
        )
        present = None
        if any(hw is None or hw.present is not None for _, hw in parts):
            present = np.concatenate(
                [
                    np.zeros(m, bool)
                    if hw is None
                    else np.ones(m, bool)
                    if hw.present is None
                    else hw.present
                    for m, hw in parts
                ]
            )
        return HexWords(words, present, any(hw is not None and hw.has_upper for _, hw in parts))
    return _hex_words_one(arr, n_words, lower_only)


def _hex_words_one(arr: pa.Array | pa.ChunkedArray, n_words: int, lower_only: bool) -> HexWords | None:
    arr = _string_array(arr)
    n = len(arr)
    if n == 0:
        return None
    width = 16 * n_words
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    lengths = np.diff(offsets)
    present = None
    if arr.null_count:
        present = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        if np.any(lengths[present] != width):
            return None
        if np.any(lengths[~present] != 0):
            # null slots that still hold bytes: parse a filled copy, keep the present rows
            hw = _hex_words_one(pc.fill_null(arr, "0" * width), n_words, lower_only)
            if hw is None:
                return None
            return HexWords(hw.words[present], present, hw.has_upper)
        rows = int(np.count_nonzero(present))
    else:
        if np.any(lengths != width):
            return None
        rows = n
    if rows == 0:
        return None
    data = arr.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    parsed = hex_u64(raw, lower_only)
    if parsed is None:
        return None
    words, has_upper = parsed
    return HexWords(words.reshape(rows, n_words), present, has_upper)


def _hex_u64(arr: pa.Array) -> np.ndarray | None:
    """Parse 16-char hex ids (any case) to uint64 without a Python loop; None if not all are."""
    hw = _hex_words(arr, 1)
    if hw is None or hw.present is not None:
        return None
    return hw.words[:, 0]


def _id_keys(ids: pa.ChunkedArray, parents: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """Integer keys for span ids and parent ids, comparable with each other.

    Returns (span keys, parent keys, hex-parsed, some span id had upper-case digits).
    """
    hw = _hex_words(ids, 1)
    if hw is not None and hw.present is None:
        u = hw.words[:, 0]
        n = len(u)
        pw = _hex_words(parents, 1)
        if pw is not None or pc.all(pc.is_null(parents)).as_py() is not False:
            pu = np.zeros(n, np.uint64)
            if pw is not None:
                if pw.present is None:
                    pu = pw.words[:, 0]
                else:
                    pu[pw.present] = pw.words[:, 0]
            return u.view(np.int64), pu.view(np.int64), True, hw.has_upper
    # Non-hex ids (conformance cases, foreign readers): a shared dictionary gives codes.
    ids_c = _string_array(ids)
    par_c = _string_array(parents)
    codes, _values = _codes(pa.concat_arrays([ids_c, par_c]))
    n = len(ids_c)
    return codes[:n].astype(np.int64), codes[n:].astype(np.int64), False, True


def _trace_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array, np.ndarray | None]:
    """(int32 code per row by first appearance, trace id per code, hex words per code or None).

    Lower-case 32-digit hex ids (what every reader writes) are parsed to two 64-bit words and
    numbered by hashing the low word (random in W3C ids, the whole id in padded 64-bit ones);
    the high word is then checked to be one per code. Anything else is dictionary-encoded.
    """
    if not pa.types.is_dictionary(col.type) and len(col):
        hw = _hex_words(col, 2, lower_only=True)
        if hw is not None and hw.present is None:
            import pandas as pd

            codes, lo = pd.factorize(hw.words[:, 1])  # numbered by first appearance
            hi = np.empty(len(lo), np.uint64)
            hi[codes] = hw.words[:, 0]
            if np.array_equal(hi[codes], hw.words[:, 0]):
                words = np.column_stack([hi, np.asarray(lo, dtype=np.uint64)])
                # each code's id as written (lower-case hex, so the same text as spelled from its words)
                first = np.empty(len(lo), np.int64)
                first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
                names = col.take(pa.array(first))
                names = names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names
                return codes.astype(np.int32), names.cast(pa.string()), words
    codes, names = _codes_arrow(col)
    names = names.cast(pa.string())
    hw = _hex_words(names, 2, lower_only=True) if len(names) and not names.null_count else None
    return codes, names, (hw.words if hw is not None and hw.present is None else None)


def _sort_spans(
    trace: np.ndarray, n_traces: int, span_key: np.ndarray, hex_ids: bool
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The order of np.lexsort((span_key, trace)) (stable), and the sorted composite keys.

    For hex span ids one 64-bit key (trace code in the high bits, the span key's top bits
    below) is sorted instead of two; rows whose composite keys tie are put in exact order
    afterwards. Returns (order, sorted composite keys or None, bits taken by the trace code).
    """
    if not hex_ids:
        return np.lexsort((span_key, trace)), None, 0
    bits = max(int(n_traces - 1).bit_length(), 1)
    comp = _composite(trace, span_key, bits)
    order = np.argsort(comp)
    comp = comp[order]
    ties = comp[1:] == comp[:-1]
    if ties.any():
        mark = np.zeros(len(comp), dtype=bool)
        mark[1:] |= ties
        mark[:-1] |= ties
        at = np.flatnonzero(mark)
        sub = order[at]
        order[at] = sub[np.lexsort((sub, span_key[sub], comp[at]))]
    return order, comp, bits


def _composite(trace: np.ndarray, span_key: np.ndarray, bits: int) -> np.ndarray:
    """trace code in the top `bits` bits, the order-preserving top bits of the signed span key below."""
    comp = trace.astype(np.uint64) << np.uint64(64 - bits)
    comp |= (span_key.view(np.uint64) ^ _SIGN) >> np.uint64(bits)
    return comp


def _find_in_trace(
    comp_sorted: np.ndarray | None,
    bits: int,
    sk: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    trace: np.ndarray,
    query: np.ndarray,
) -> np.ndarray:
    """Index of the span with key `query` in the span's trace (rows sorted by trace, key), -1 if none.

    `trace`, `query` are per query; lo/hi the trace segments per trace code.
    """
    n = len(sk)
    if len(query) == 0 or n == 0:
        return np.full(len(query), -1, np.int64)
    if comp_sorted is None:
        return _exact_in_segments(sk, lo[trace], hi[trace], query)
    q = _composite(trace, query, bits)
    pos = np.searchsorted(comp_sorted, q)
    pos_c = np.minimum(pos, n - 1)
    same_comp = (pos < n) & (comp_sorted[pos_c] == q)
    exact = same_comp & (sk[pos_c] == query)
    out = np.where(exact, pos_c, -1).astype(np.int64)
    # The composite drops the key's low bits: where they differ, search the trace exactly.
    amb = np.flatnonzero(same_comp & ~exact)
    if len(amb):
        t = trace[amb]
        out[amb] = _exact_in_segments(sk, lo[t], hi[t], query[amb])
    return out


def _exact_in_segments(sk: np.ndarray, lo: np.ndarray, hi: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of `query` in sk[lo:hi] (each segment sorted), -1 where it is not there."""
    pos = segmented_search(sk, lo, hi, query)
    ok = pos < hi
    ok[ok] = sk[pos[ok]] == query[ok]
    return np.where(ok, pos, -1)


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
    """Codes (-1 where absent) and dictionary of a map<string,string> column's value under `key`.

    Map keys may be dictionary-encoded (as ParquetColumns reads them): then the key is found
    once in the dictionary and the rows by comparing int32 indices.
    """
    none = (np.full(n, -1, np.int32), np.asarray([], dtype=object))
    if n == 0 or col.null_count == n:
        return none
    rows_parts: list[np.ndarray] = []
    value_parts: list[pa.Array] = []
    base = 0
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    for arr in chunks:
        m = len(arr)
        off = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        keys, items = arr.keys, arr.items
        if len(keys) != off[-1] - off[0]:
            keys, items = keys.slice(off[0], off[-1] - off[0]), items.slice(off[0], off[-1] - off[0])
        if len(keys):
            if pa.types.is_dictionary(keys.type):
                at = pc.index(keys.dictionary.cast(pa.string()), key).as_py()
                hit_np = (
                    keys.indices.to_numpy(zero_copy_only=False) == at
                    if at >= 0
                    else np.zeros(len(keys), dtype=bool)
                )
                if keys.null_count:
                    hit_np &= np.asarray(keys.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            else:
                hit_np = np.asarray(
                    pc.equal(keys, key).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool
                )
            if hit_np.any():
                # Row of each hit by binary search in the offsets: no per-entry row array is built.
                hit_pos = np.flatnonzero(hit_np) + off[0]
                rows_parts.append(np.searchsorted(off, hit_pos, side="right") - 1 + base)
                value_parts.append(items.filter(pa.array(hit_np)).cast(pa.string()))
        base += m
    if not rows_parts:
        return none
    vcodes, names = _codes(pa.concat_arrays(value_parts))
    codes = np.full(n, -1, np.int32)
    codes[np.concatenate(rows_parts)] = vcodes
    return codes, names


def _per_trace_name(codes: np.ndarray, names: np.ndarray, trace_lo: np.ndarray) -> np.ndarray:
    """One name per trace: the largest code seen in the trace (spans without one are -1)."""
    if len(codes) == 0:
        return np.asarray([], dtype=object)
    best = np.maximum.reduceat(codes, trace_lo) if len(trace_lo) else np.asarray([], np.int32)
    lookup = np.append(names, "").astype(object)
    return lookup[np.where(best >= 0, best, len(names))]


def _merged_codes(
    primary: pa.ChunkedArray, fallback: pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of coalesce(primary, fallback) over one merged dictionary (-1 where both are null),
    and where the primary had the value."""
    pc_, pn = _codes(primary)
    fc, fn = _codes(fallback)
    names = np.asarray(sorted(set(pn.tolist()) | set(fn.tolist())), dtype=object)
    index = {v: i for i, v in enumerate(names.tolist())}
    pmap = np.array([index[v] for v in pn.tolist()] + [-1], dtype=np.int32)
    fmap = np.array([index[v] for v in fn.tolist()] + [-1], dtype=np.int32)
    out = np.where(pc_ >= 0, pmap[pc_], fmap[fc])
    return out.astype(np.int32), names, pc_ >= 0


class ParquetColumns:
    """A span Parquet file read one column at a time, so only a column or two are alive at once.

    `prefetch(names)` reads the columns in that order on a background thread, one ahead of
    the caller: Parquet decoding releases the GIL, so it overlaps the numpy work on the
    column before. A tuple of names is read in one go with Arrow's threads (one column
    per core), for columns the caller needs all of before it can start.
    """

    #: strings read dictionary-encoded (their codes are what prepare() needs)
    DICTIONARY = ("name", "kind", "service", "stack", "workload", "hop", "event_id")
    #: read dictionary-encoded only where the file stores them so (SPAN_PARQUET_OPTIONS does;
    #: files written before it read faster plain than hashed into a dictionary on reading)
    DICTIONARY_IF_STORED = ("trace_id",)
    #: map columns whose keys and values are read dictionary-encoded
    MAPS = ("attributes", "resource")
    #: reads (a column or a tuple of them) started ahead of the one asked for. Two keep the
    #: reader ahead of prepare() (it never waited at 10 M spans); reading all of them ahead
    #: held all ~0.8 GB of those Arrow columns at once, and fresh memory is what the analysis
    #: spends most time on
    AHEAD = 2

    def __init__(self, path: str) -> None:
        import pyarrow.parquet as pq

        self._file = pq.ParquetFile(path)
        self.column_names = self._file.schema_arrow.names
        self.num_rows = self._file.metadata.num_rows
        self.path = path
        self._stored_as_dictionary = {
            name for name in self.DICTIONARY_IF_STORED if self._dictionary_pages(name)
        }
        self._queue: list[tuple[str, ...]] = []
        self._ahead: dict[str, Future] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # prepare() asks for columns from three threads
        self._group_files: dict[tuple[str, ...], pq.ParquetFile] = {}  # row_groups' reads

    def prefetch(self, names: Sequence[str | tuple[str, ...]]) -> None:
        groups = ((n,) if isinstance(n, str) else tuple(n) for n in names)
        with self._lock:
            wanted = (tuple(n for n in g if n in self.column_names and n not in self._ahead) for g in groups)
            self._queue = [g for g in wanted if g]
            self._fill()

    def row_groups(
        self, names: tuple[str, ...], then: Sequence[str | tuple[str, ...]] = ()
    ) -> Iterator[dict[str, pa.ChunkedArray]]:
        """`names` a row group at a time, read on the reader thread up to two groups ahead of
        the one the caller works on; `then` is prefetched after the last group."""
        names = tuple(n for n in names if n in self.column_names)
        pending: deque[Future] = deque()
        for group in range(self._file.metadata.num_row_groups):
            pending.append(self._reader().submit(self._read, names, group))
            if len(pending) > 2:
                yield pending.popleft().result()
        self.prefetch(then)
        while pending:
            yield pending.popleft().result()

    def _reader(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-columns")
        return self._pool

    def _fill(self) -> None:
        while self._queue and len({id(f) for f in self._ahead.values()}) < self.AHEAD:
            group = self._queue.pop(0)
            fut = self._reader().submit(self._read, group)
            for name in group:
                self._ahead[name] = fut
        if self._pool is not None and not self._queue and not self._ahead:
            self._pool.shutdown(wait=False)
            self._pool = None

    def column(self, name: str) -> pa.ChunkedArray:
        from hopscope.core.schema import SPAN_SCHEMA

        if name not in self.column_names:
            f = SPAN_SCHEMA.field(name)
            return pa.chunked_array([pa.nulls(self.num_rows, f.type)])
        with self._lock:
            fut = self._ahead.pop(name, None)
            if fut is None:
                self._queue = [g for g in (tuple(n for n in g if n != name) for g in self._queue) if g]
            self._fill()
        return (fut.result() if fut is not None else self._read((name,)))[name]

    def _dictionary_pages(self, name: str) -> bool:
        """Every row group stores the column with dictionary pages."""
        meta = self._file.metadata
        found = False
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                if col.path_in_schema == name:
                    if not {"RLE_DICTIONARY", "PLAIN_DICTIONARY"} & set(col.encodings):
                        return False
                    found = True
        return found

    def _read(self, names: tuple[str, ...], group: int | None = None) -> dict[str, pa.ChunkedArray]:
        """The columns of the whole file, or of one row group."""
        import pyarrow.parquet as pq

        dictionary: list[str] = []
        for name in names:
            if name in self.DICTIONARY or name in self._stored_as_dictionary:
                dictionary.append(name)
            elif name in self.MAPS:
                dictionary += [f"{name}.key_value.key", f"{name}.key_value.value"]

        def read(dictionary: list[str]) -> pa.Table:
            if group is None:
                return pq.read_table(self.path, columns=list(names), read_dictionary=dictionary)
            # one open file (footer parsed once) for all the row groups the reader thread reads
            key = tuple(dictionary)
            if key not in self._group_files:
                self._group_files[key] = pq.ParquetFile(self.path, read_dictionary=dictionary)
            return self._group_files[key].read_row_group(group, list(names))

        try:
            t = read(dictionary)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
            t = read([])
        return {name: t.column(name) for name in names}


#: the columns the id index is built from
ID_COLUMNS = ("trace_id", "span_id", "parent_span_id", "links")


#: the order in which prepare() asks for columns (for ParquetColumns.prefetch)
PREPARE_COLUMNS: tuple[str | tuple[str, ...], ...] = (
    ID_COLUMNS,  # read together where the id index is not streamed: it needs all four at once
    # then the columns of _times_and_hops, _placements and _memberships interleaved: the three
    # run side by side
    "start_ns",
    "service",
    "stack",
    "end_ns",
    "resource",
    "workload",
    "kind",
    "derived",
    "event_id",
    "hop",
    "attributes",
    "name",
)


def _non_empty(col: pa.ChunkedArray) -> np.ndarray:
    """bool per row: a non-null, non-empty string."""
    arr = _string_array(col)
    if len(arr) == 0:
        return np.zeros(0, dtype=bool)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    out = np.diff(offsets) > 0
    if arr.null_count:
        out &= np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return out


def _trace_events(col: pa.ChunkedArray, keep: np.ndarray, trace_lo: np.ndarray, n_traces: int) -> pa.Array:
    """The event id of each trace: of its kept spans' values, the one with the largest code."""
    n = len(keep)
    ev_c, ev_n = _codes_arrow(col)
    ev_best = np.maximum.reduceat(ev_c[keep], trace_lo) if n else np.zeros(0, np.int32)
    trace_event = (
        pc.take(ev_n, pa.array(np.where(ev_best >= 0, ev_best, 0)))
        if len(ev_n)
        else pa.nulls(n_traces, pa.string())
    )
    if len(ev_n):
        trace_event = pc.if_else(pa.array(ev_best >= 0), trace_event, pa.scalar(None, trace_event.type))
    return trace_event.cast(pa.string())


@dataclass
class IdIndex:
    """What prepare() learns from the id columns: spans in (trace, span id) order without
    duplicate ids, dense trace codes by first appearance, parents and links as span indices."""

    keep: np.ndarray  # int64 file row per span
    trace: np.ndarray  # int64 trace code per span, ascending
    span_key: np.ndarray  # int64 span id key per span
    parent: np.ndarray  # int64 span index of the parent, -1 if none found
    has_parent_id: np.ndarray  # bool per span
    link_parent: np.ndarray  # int64 span index of the first same-trace linked span, -1 if none
    trace_lo: np.ndarray
    trace_hi: np.ndarray
    duplicates: np.ndarray  # int64 dropped duplicate span ids per trace
    trace_names: pa.Array  # trace id string per trace code
    span_id_col: pa.ChunkedArray | None  # the span id column when ids must be read from it


def _native_index(ids: dict[str, pa.ChunkedArray]) -> IdIndex | None:
    """The id index from the native kernel, or None when it is not built or declines the ids."""
    from . import kernels  # kernels imports this module for its types

    if not kernels.AVAILABLE:
        return None
    out = kernels.index_spans(ids["trace_id"], ids["span_id"], ids["parent_span_id"], ids["links"])
    # lower-case hex: span ids are spelled again from their keys when asked for
    return None if out is None else IdIndex(**out, span_id_col=None)


def _streamed_native_index(table: ParquetColumns) -> IdIndex | None:
    """The id index from the native kernel fed a row group at a time while the next is read
    (the other columns prefetched after), or None when it is not built or declines the ids."""
    from . import kernels

    if not kernels.AVAILABLE or not set(ID_COLUMNS) <= set(table.column_names):
        return None
    builder = kernels.IdIndexBuilder(table.num_rows)
    for group in table.row_groups(ID_COLUMNS, then=PREPARE_COLUMNS[1:]):
        if not builder.add(*(group[name] for name in ID_COLUMNS)):
            break
    out = builder.finish()
    return None if out is None else IdIndex(**out, span_id_col=None)


def _numpy_index(ids: dict[str, pa.ChunkedArray]) -> IdIndex:
    """The id index with numpy (every id spelling; the reference for the native kernel)."""
    n0 = len(ids["trace_id"])
    trace_codes, trace_names, trace_words = _trace_codes(ids["trace_id"])
    n_traces0 = len(trace_names)
    span_id_col = ids["span_id"]
    parent_col = ids["parent_span_id"]
    span_key, parent_key, hex_ids, upper_ids = _id_keys(span_id_col, parent_col)
    has_pid = _non_empty(parent_col)
    del parent_col
    if not upper_ids:
        span_id_col = None  # lower-case hex: the ids are re-spelled from their keys when asked for

    order, comp, bits = _sort_spans(
        trace_codes, n_traces0, span_key, hex_ids and n_traces0 and trace_codes.min() >= 0
    )
    tr = trace_codes[order]
    sk = span_key[order]
    dup = np.zeros(n0, dtype=bool)
    if n0 > 1:
        dup[1:] = (tr[1:] == tr[:-1]) & (sk[1:] == sk[:-1])
    any_dup = bool(dup.any())
    keep = order[~dup] if any_dup else order
    dup_per_trace = np.bincount(tr[dup], minlength=n_traces0) if any_dup else np.zeros(n_traces0, np.int64)
    if any_dup:
        tr = tr[~dup]
        sk = sk[~dup]
        comp = comp[~dup] if comp is not None else None
    n = len(keep)
    pk = parent_key[keep]
    hp = has_pid[keep]
    where = np.full(n0, -1, np.int64)  # file row -> sorted position (duplicates map to -1)
    where[keep] = np.arange(n)
    del order, span_key, parent_key, has_pid, trace_codes, dup  # 10M-row temporaries: keep the peak low

    # Dense trace codes in sorted order; every trace keeps at least one span after dedup.
    bounds = np.flatnonzero(tr[1:] != tr[:-1]) + 1
    trace_lo = np.concatenate([[0], bounds]).astype(np.int64) if n else np.zeros(0, np.int64)
    trace_hi = np.concatenate([bounds, [n]]).astype(np.int64) if n else np.zeros(0, np.int64)
    del bounds
    uniq = tr[trace_lo]
    dense_codes = len(uniq) == n_traces0  # codes are 0..T-1 already (the usual case)
    if dense_codes:
        seg_of = tr
    else:
        seg_of = np.zeros(n, np.int64)
        if n:
            seg_of[trace_lo[1:]] = 1
            np.cumsum(seg_of, out=seg_of)
    pos = _find_in_trace(comp, bits, sk, trace_lo, trace_hi, seg_of, pk)
    found = pos >= 0
    parent = np.where(found & hp, pos, -1).astype(np.int64)
    del pos, found, pk

    link_parent = np.full(n, -1, dtype=np.int64)
    links = ids["links"].combine_chunks()
    flat = pc.list_flatten(links)
    if len(flat):
        rows_file = pc.list_parent_indices(links).to_numpy()
        rows = where[rows_file]
        lt_words = _hex_words(flat.field("trace_id"), 2, lower_only=True) if trace_words is not None else None
        if lt_words is not None and lt_words.present is None:
            # same trace: the link's trace id equals its span's (lower-case hex: words compare as strings)
            tw = trace_words[tr[np.maximum(rows, 0)]] if n else np.zeros((len(rows), 2), np.uint64)
            same = (rows >= 0) & (lt_words.words[:, 0] == tw[:, 0]) & (lt_words.words[:, 1] == tw[:, 1])
            del tw
        else:
            ltr = pc.index_in(flat.field("trace_id"), value_set=trace_names.cast(pa.string()))
            ltr = ltr.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            same = (rows >= 0) & (ltr == tr[np.maximum(rows, 0)])
        if same.any():
            rows = rows[same]
            lk_arr = flat.field("span_id").filter(pa.array(same))
            lk = _hex_u64(lk_arr) if hex_ids else None
            if lk is None:
                span_strs = _string_array(ids["span_id"]).to_numpy(zero_copy_only=False)[keep]
                for r, sid in zip(rows.tolist(), lk_arr.to_pylist(), strict=True):
                    lo_, hi_ = trace_lo[seg_of[r]], trace_hi[seg_of[r]]
                    hits = np.flatnonzero(span_strs[lo_:hi_] == sid)
                    if len(hits) and lo_ + hits[0] != r and link_parent[r] < 0:
                        link_parent[r] = lo_ + hits[0]
            else:
                lk = lk.view(np.int64)
                lpos = _find_in_trace(comp, bits, sk, trace_lo, trace_hi, seg_of[rows], lk)
                ok = (lpos >= 0) & (lpos != rows)
                # a span's first link wins: write in reverse so earlier links overwrite later ones
                link_parent[rows[ok][::-1]] = lpos[ok][::-1]
    del links, flat
    return IdIndex(
        keep=keep,
        trace=seg_of.astype(np.int64),
        span_key=sk,
        parent=parent,
        has_parent_id=hp,
        link_parent=link_parent,
        trace_lo=trace_lo,
        trace_hi=trace_hi,
        duplicates=dup_per_trace[uniq],
        trace_names=trace_names if dense_codes else trace_names.take(pa.array(uniq)).cast(pa.string()),
        span_id_col=span_id_col,
    )


def _times_and_hops(
    table: pa.Table | ParquetColumns, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, end clipped to start, negative duration, kind, hop, hop names, hop from the
    attribute) per kept span."""
    start = table.column("start_ns").to_numpy().astype(np.int64, copy=False)[keep]
    end = table.column("end_ns").to_numpy().astype(np.int64, copy=False)[keep]
    negative = end < start
    end = np.where(negative, start, end)

    kind_codes, kind_names = _codes(table.column("kind"))
    kind_map = np.array([KIND_CODES.get(str(k).upper(), 0) for k in kind_names] + [1], dtype=np.int8)
    kind = kind_map[np.where(kind_codes >= 0, kind_codes, len(kind_names))][keep]

    hop, hop_names, hop_attr = _merged_codes(table.column("hop"), table.column("name"))
    hop = np.where(hop >= 0, hop, len(hop_names)).astype(np.int32)[keep]
    hop_attr = hop_attr[keep]
    hop_names = np.append(hop_names, "(unnamed)").astype(object)
    return start, end, negative, kind, hop, hop_names, hop_attr


def _placements(table: pa.Table | ParquetColumns, keep: np.ndarray) -> dict:
    """SpanArrays' fields saying where a span ran: service, host, derived, subscriber."""
    service, service_names = _codes(table.column("service"))
    host = service.copy()
    res = table.column("resource")
    offset = len(service_names) + 1
    for key in HOST_KEYS:
        codes, names = _lookup_codes(res, key, table.num_rows)
        host = np.where((codes >= 0) & (host < offset), codes + offset, host)
        offset += len(names) + 1
    del res
    derived = np.asarray(table.column("derived").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    subscriber, subscriber_names = _lookup_codes(table.column("attributes"), ATTR_SUBSCRIBER, table.num_rows)
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
    stack_c, stack_n = _codes(table.column("stack"))
    work_c, work_n = _codes(table.column("workload"))
    return {
        "trace_stack": _per_trace_name(stack_c[keep], stack_n, trace_lo),
        "trace_workload": _per_trace_name(work_c[keep], work_n, trace_lo),
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
    ix = _streamed_native_index(table) if isinstance(table, ParquetColumns) else None
    if ix is None:
        if isinstance(table, ParquetColumns):
            table.prefetch(PREPARE_COLUMNS)
        ids = {name: table.column(name) for name in ID_COLUMNS}
        ix = _native_index(ids) or _numpy_index(ids)
        del ids
    keep, hp, trace_lo = ix.keep, ix.has_parent_id, ix.trace_lo
    orphan = hp & (ix.parent < 0)
    # the other columns in three parts side by side (numpy and Arrow let go of the GIL in their
    # loops): at 10 M spans each part is ~1 s of whole-array passes
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare") as pool:
        placements = pool.submit(_placements, table, keep)
        memberships = pool.submit(_memberships, table, keep, trace_lo)
        start, end, negative, kind, hop, hop_names, hop_attr = _times_and_hops(table, keep)
        org = {**placements.result(), **memberships.result()}

    counts = {
        "duplicate_span_ids": ix.duplicates,
        "orphan_spans": np.bincount(ix.trace[orphan], minlength=len(trace_lo)),
        "negative_durations": np.bincount(ix.trace[negative], minlength=len(trace_lo)),
        "true_roots": np.bincount(ix.trace[~hp], minlength=len(trace_lo)),
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
        start=start,
        end=end,
        kind=kind,
        hop=hop,
        hop_names=hop_names,
        counts=counts,
        **org,
    )
    return fold_library_spans(arrays, hop_attr)
