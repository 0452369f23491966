"""The id index: spans in (trace, span id) order without duplicate ids, dense trace codes,
parents and same-trace links as span indices. Native (kernels.py) when the ids are spelled as
the readers write them, fed a row group at a time; else numpy, the reference for every spelling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import kernels
from .columns import dict_codes, dict_codes_arrow, hex_u64, hex_words, non_empty, string_array
from .search import segmented_search
from .span_file import ID_COLUMNS, PREPARE_COLUMNS, ParquetColumns

_SIGN = np.uint64(1 << 63)


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
    if not kernels.AVAILABLE:
        kernels.fallback()
        return None
    out = kernels.index_spans(ids["trace_id"], ids["span_id"], ids["parent_span_id"], ids["links"])
    # lower-case hex: span ids are spelled again from their keys when asked for
    return None if out is None else IdIndex(**out, span_id_col=None)


def _streamed_native_index(table: ParquetColumns) -> IdIndex | None:
    """The id index from the native kernel fed a row group at a time while the next is read
    (the other columns prefetched after), or None when it is not built or declines the ids."""
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
    has_pid = non_empty(parent_col)
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
        lt_words = hex_words(flat.field("trace_id"), 2, lower_only=True) if trace_words is not None else None
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
            lk = hex_u64(lk_arr) if hex_ids else None
            if lk is None:
                span_strs = string_array(ids["span_id"]).to_numpy(zero_copy_only=False)[keep]
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


def _id_keys(ids: pa.ChunkedArray, parents: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """Integer keys for span ids and parent ids, comparable with each other.

    Returns (span keys, parent keys, hex-parsed, some span id had upper-case digits).
    """
    hw = hex_words(ids, 1)
    if hw is not None and hw.present is None:
        u = hw.words[:, 0]
        n = len(u)
        pw = hex_words(parents, 1)
        if pw is not None or pc.all(pc.is_null(parents)).as_py() is not False:
            pu = np.zeros(n, np.uint64)
            if pw is not None:
                if pw.present is None:
                    pu = pw.words[:, 0]
                else:
                    pu[pw.present] = pw.words[:, 0]
            return u.view(np.int64), pu.view(np.int64), True, hw.has_upper
    # Non-hex ids (conformance cases, foreign readers): a shared dictionary gives codes.
    ids_c = string_array(ids)
    par_c = string_array(parents)
    codes, _values = dict_codes(pa.concat_arrays([ids_c, par_c]))
    n = len(ids_c)
    return codes[:n].astype(np.int64), codes[n:].astype(np.int64), False, True


def _trace_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array, np.ndarray | None]:
    """(int32 code per row by first appearance, trace id per code, hex words per code or None).

    Lower-case 32-digit hex ids (what every reader writes) are parsed to two 64-bit words and
    numbered by hashing the low word (random in W3C ids, the whole id in padded 64-bit ones);
    the high word is then checked to be one per code. Anything else is dictionary-encoded.
    """
    if not pa.types.is_dictionary(col.type) and len(col):
        hw = hex_words(col, 2, lower_only=True)
        if hw is not None and hw.present is None:
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
    codes, names = dict_codes_arrow(col)
    names = names.cast(pa.string())
    hw = hex_words(names, 2, lower_only=True) if len(names) and not names.null_count else None
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


def build_index(table: pa.Table | ParquetColumns) -> IdIndex:
    """The id index of a span table: from a Parquet file natively a row group at a time, else
    natively from whole columns, else with numpy (every id spelling)."""
    ix = _streamed_native_index(table) if isinstance(table, ParquetColumns) else None
    if ix is None:
        if isinstance(table, ParquetColumns):
            table.prefetch(PREPARE_COLUMNS)
        ids = {name: table.column(name) for name in ID_COLUMNS}
        ix = _native_index(ids) or _numpy_index(ids)
        del ids
    return ix
