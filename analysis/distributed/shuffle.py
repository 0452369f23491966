"""Partition by trace: every span goes to the bucket of its trace (or of the trace its event
is joined under, for foreign traces linked across traces), so each bucket holds whole traces
and whole event trees and the single-process kernels run on it unchanged.

The shuffle goes through files, not worker memory: a map task reads one piece, sorts its rows
by bucket and writes one Parquet file per bucket it touches under the scratch folder; a
partition task reads its bucket's files. A worker holds one piece or one bucket at a time,
whatever the run's size, and a retried task (a worker lost) writes the same files again.
"""

from __future__ import annotations

from collections.abc import Mapping

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hopscope.core.schema import SPAN_PARQUET_OPTIONS, SPAN_SCHEMA

from ..span_file import NEEDED_COLUMNS
from .sources import Piece

#: the columns a bucket file carries, in the span schema's types (files that lack one get nulls,
#: so every bucket file has one schema)
BUCKET_SCHEMA = pa.schema([SPAN_SCHEMA.field(c) for c in NEEDED_COLUMNS])
_WRITE_OPTIONS = {
    **SPAN_PARQUET_OPTIONS,
    "use_dictionary": [c for c in SPAN_PARQUET_OPTIONS.get("use_dictionary", []) if c in NEEDED_COLUMNS],
}
_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def bucket_dir(scratch: str, bucket: int) -> str:
    return f"{scratch.rstrip('/')}/b{bucket:05d}"


def _hex_hashes(ids: pa.Array) -> np.ndarray | None:
    """The last 16 hex digits of each id as a number, when every id is 32 hex digits; else None."""
    if ids.null_count or not len(ids):
        return None
    offsets = np.frombuffer(ids.buffers()[1], np.int32)[ids.offset : ids.offset + len(ids) + 1]
    if not np.all(np.diff(offsets) == 32):
        return None
    data = np.frombuffer(ids.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 32)
    nibbles = _HEX[data[:, 16:]]
    if (nibbles == 255).any():
        return None
    out = np.zeros(len(ids), np.uint64)
    for j in range(16):
        out = (out << np.uint64(4)) | nibbles[:, j].astype(np.uint64)
    return out


def _hashes(ids: pa.Array) -> np.ndarray:
    """A stable 64-bit hash per id, the same whatever array it is in and in every process: the
    last 16 hex digits of an id of 32 hex digits (what the readers write, any case), else
    pandas' hash of the lower-cased string."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    fast = _hex_hashes(ids)
    if fast is not None:
        return fast
    out = np.zeros(len(ids), np.uint64)
    is_hex = np.asarray(
        pc.match_substring_regex(ids, "^[0-9a-fA-F]{32}$").fill_null(False).to_numpy(zero_copy_only=False), bool
    )
    if is_hex.any():
        out[is_hex] = _hex_hashes(ids.filter(pa.array(is_hex)))
    rest = ~is_hex
    if rest.any():
        lower = pc.utf8_lower(ids.filter(pa.array(rest)).fill_null("")).to_numpy(zero_copy_only=False)
        out[rest] = pd.util.hash_array(np.asarray(lower, dtype=object))
    return out


def buckets_of(trace_ids: pa.Array, n_buckets: int, joined: Mapping[str, str] | None = None) -> np.ndarray:
    """The bucket of each span, from its trace id (or the id its trace is joined under)."""
    ids = trace_ids.cast(pa.string())
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if joined:
        keys = pa.array(list(joined), pa.string())
        at = pc.index_in(ids, value_set=keys).fill_null(-1).to_numpy(zero_copy_only=False)
        hit = at >= 0
        if hit.any():
            values = np.array(list(joined.values()), dtype=object)
            named = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)
            named[hit] = values[at[hit]]
            ids = pa.array(named, pa.string())
    h = _hashes(ids)
    # the low bits of a random id are uniform already; the multiply spreads other spellings
    mixed = h * np.uint64(0x9E3779B97F4A7C15)
    return ((mixed >> np.uint64(32)) % np.uint64(n_buckets)).astype(np.int64)


def _normalised(table: pa.Table) -> pa.Table:
    """The table in BUCKET_SCHEMA: missing columns as nulls, dictionaries decoded."""
    cols = []
    for f in BUCKET_SCHEMA:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=BUCKET_SCHEMA)


def read_piece(piece: Piece, storage_options: dict, columns: list[str] | None = None) -> pa.Table:
    with fsspec.open(piece.url, "rb", **storage_options) as f:
        pf = pq.ParquetFile(f)
        names = [c for c in (columns or NEEDED_COLUMNS) if c in pf.schema_arrow.names]
        return pf.read_row_groups(list(piece.row_groups), columns=names)


def shuffle_piece(
    piece: Piece,
    index: int,
    n_buckets: int,
    scratch: str,
    storage_options: dict,
    joined: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Write piece `index`'s spans into the bucket files; spans per bucket."""
    table = _normalised(read_piece(piece, storage_options))
    bucket = buckets_of(table.column("trace_id"), n_buckets, joined)
    order = np.argsort(bucket, kind="stable")
    counts = np.bincount(bucket, minlength=n_buckets)
    table = table.take(pa.array(order))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    fs, _ = fsspec.core.url_to_fs(scratch, **storage_options)
    for b in np.flatnonzero(counts):
        part = table.slice(int(bounds[b]), int(counts[b]))
        folder = bucket_dir(scratch, int(b))
        fs.makedirs(fsspec.core.url_to_fs(folder, **storage_options)[1], exist_ok=True)
        with fsspec.open(f"{folder}/p{index:06d}.parquet", "wb", **storage_options) as f:
            pq.write_table(part, f, **_WRITE_OPTIONS)
    return counts


def read_bucket(scratch: str, bucket: int, storage_options: dict) -> pa.Table:
    """All spans of one bucket (its files from every piece), in BUCKET_SCHEMA."""
    folder = bucket_dir(scratch, bucket)
    fs, path = fsspec.core.url_to_fs(folder, **storage_options)
    if not fs.isdir(path):
        return BUCKET_SCHEMA.empty_table()
    parts = []
    for p in sorted(fs.ls(path, detail=False)):
        with fs.open(p, "rb") as f:
            parts.append(pq.read_table(f, schema=BUCKET_SCHEMA))
    return pa.concat_tables(parts) if parts else BUCKET_SCHEMA.empty_table()


def link_edges(piece: Piece, storage_options: dict) -> list[tuple[str, str]]:
    """(trace, linked trace) for each span without a parent that links to another trace: the
    consumer traces foreign.py joins to their producer's, which must share its bucket."""
    table = read_piece(piece, storage_options, ["trace_id", "parent_span_id", "links"])
    if "links" not in table.column_names or table.num_rows == 0:
        return []
    links = table.column("links").combine_chunks()
    parent = table.column("parent_span_id").cast(pa.string())
    rootish = pc.or_kleene(pc.is_null(parent), pc.equal(parent, "")).fill_null(True)
    has_links = pc.greater(pc.list_value_length(links).fill_null(0), 0)
    sel = pc.and_(rootish, has_links)
    if not pc.any(sel).as_py():
        return []
    links = links.filter(sel)
    if isinstance(links, pa.ChunkedArray):
        links = links.combine_chunks()
    own = table.column("trace_id").cast(pa.string()).filter(sel).combine_chunks()
    flat = pc.list_flatten(links)
    owner = pc.list_parent_indices(links)
    child = own.take(owner).to_pylist()
    parent_trace = flat.field("trace_id").to_pylist()
    return sorted({(c, p) for c, p in zip(child, parent_trace, strict=True) if p and c and p != c})


def joined_traces(edges: list[tuple[str, str]]) -> dict[str, str]:
    """Per trace that takes part in a link: the representative of its linked group (union-find)."""
    up: dict[str, str] = {}

    def find(x: str) -> str:
        up.setdefault(x, x)
        while up[x] != x:
            up[x] = up[up[x]]
            x = up[x]
        return x

    for child, parent in edges:
        a, b = find(child), find(parent)
        if a != b:
            up[max(a, b)] = min(a, b)  # the smaller id leads: the same whatever the edge order
    return {t: find(t) for t in up}
