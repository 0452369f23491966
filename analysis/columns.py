"""Arrow span-table columns to numpy: dictionary codes (chunked dictionaries unified once),
hex ids parsed to 64-bit words, map-column lookups, per-trace names. No Python loop over rows."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hopscope.core.ids import hex_u64 as parse_hex_u64


def dict_codes(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode a string column: (int32 codes with -1 for null, dictionary values)."""
    codes, dictionary = dict_codes_arrow(arr)
    return codes, dictionary.to_numpy(zero_copy_only=False).astype(object)


def dict_codes_arrow(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Like codes, with the dictionary left as an Arrow array (for columns with millions of values).

    Codes number the values by first appearance; a column read dictionary-encoded keeps its codes.
    """
    if isinstance(arr, pa.ChunkedArray) and arr.num_chunks == 1:
        arr = arr.chunk(0)
    enc = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
    if isinstance(enc, pa.ChunkedArray):
        return unified_codes(enc)
    indices = enc.indices.fill_null(-1) if enc.indices.null_count else enc.indices
    return indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), enc.dictionary


def unified_codes(enc: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
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


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_strings(words: np.ndarray) -> pa.Array:
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


def string_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    return arr


def hex_words(arr: pa.Array | pa.ChunkedArray, n_words: int, *, lower_only: bool = False) -> HexWords | None:
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
    arr = string_array(arr)
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
    parsed = parse_hex_u64(raw, lower_only)
    if parsed is None:
        return None
    words, has_upper = parsed
    return HexWords(words.reshape(rows, n_words), present, has_upper)


def hex_u64(arr: pa.Array) -> np.ndarray | None:
    """Parse 16-char hex ids (any case) to uint64 without a Python loop; None if not all are."""
    hw = hex_words(arr, 1)
    if hw is None or hw.present is not None:
        return None
    return hw.words[:, 0]


def non_empty(col: pa.ChunkedArray) -> np.ndarray:
    """bool per row: a non-null, non-empty string."""
    arr = string_array(col)
    if len(arr) == 0:
        return np.zeros(0, dtype=bool)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    out = np.diff(offsets) > 0
    if arr.null_count:
        out &= np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return out


def lookup_codes(col: pa.ChunkedArray, key: str, n: int) -> tuple[np.ndarray, np.ndarray]:
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
    vcodes, names = dict_codes(pa.concat_arrays(value_parts))
    codes = np.full(n, -1, np.int32)
    codes[np.concatenate(rows_parts)] = vcodes
    return codes, names


def per_trace_name(codes: np.ndarray, names: np.ndarray, trace_lo: np.ndarray) -> np.ndarray:
    """One name per trace: the largest code seen in the trace (spans without one are -1)."""
    if len(codes) == 0:
        return np.asarray([], dtype=object)
    best = np.maximum.reduceat(codes, trace_lo) if len(trace_lo) else np.asarray([], np.int32)
    lookup = np.append(names, "").astype(object)
    return lookup[np.where(best >= 0, best, len(names))]


def merged_codes(
    primary: pa.ChunkedArray, fallback: pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Codes of coalesce(primary, fallback) over one merged dictionary (-1 where both are null),
    where the primary had the value, and the fallback's own codes in that dictionary."""
    pc_, pn = dict_codes(primary)
    fc, fn = dict_codes(fallback)
    names = np.asarray(sorted(set(pn.tolist()) | set(fn.tolist())), dtype=object)
    index = {v: i for i, v in enumerate(names.tolist())}
    pmap = np.array([index[v] for v in pn.tolist()] + [-1], dtype=np.int32)
    fmap = np.array([index[v] for v in fn.tolist()] + [-1], dtype=np.int32)
    own = fmap[fc]
    out = np.where(pc_ >= 0, pmap[pc_], own)
    return out.astype(np.int32), names, pc_ >= 0, own
