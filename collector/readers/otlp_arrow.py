"""The fast path for OTLP JSON lines: pyarrow.json with an explicit schema, then vectorised columns.

It takes a file only as a whole and only in the spelling the collector's file
exporter writes (hex ids, int kinds, string 64-bit ints, scalar attribute
values). Anything else — a bad line, a base64 id, an enum name, an arrayValue
attribute, an end before a start — raises `NeedsSlowPath`, and the caller reads
the file again line by line (otlp_dict.py), which names every bad line and field.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from hopscope.collector.errors import DEFAULT_LIMITS, Limits
from hopscope.core.attributes import (
    ATTR_DERIVED,
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_SERVICE,
    ATTR_STACK,
    ATTR_WORKLOAD,
)
from hopscope.core.ids import unhex
from hopscope.core.schema import KINDS, SPAN_SCHEMA, STATUSES

from .rows import RESOURCE_LIFTED, SPAN_LIFTED

_ANY = pa.struct(
    [
        ("stringValue", pa.string()),
        ("intValue", pa.string()),
        ("doubleValue", pa.float64()),
        ("boolValue", pa.bool_()),
        ("bytesValue", pa.string()),
    ]
)
_KV = pa.list_(pa.struct([("key", pa.string()), ("value", _ANY)]))
_LINK = pa.struct([("traceId", pa.string()), ("spanId", pa.string())])
_SPAN = pa.struct(
    [
        ("traceId", pa.string()),
        ("spanId", pa.string()),
        ("parentSpanId", pa.string()),
        ("name", pa.string()),
        ("kind", pa.int32()),
        ("startTimeUnixNano", pa.string()),
        ("endTimeUnixNano", pa.string()),
        ("attributes", _KV),
        ("links", pa.list_(_LINK)),
        ("status", pa.struct([("code", pa.int32())])),
    ]
)
_RS = pa.struct(
    [
        ("resource", pa.struct([("attributes", _KV)])),
        ("scopeSpans", pa.list_(pa.struct([("spans", pa.list_(_SPAN))]))),
    ]
)
_FILE_SCHEMA = pa.schema([("resourceSpans", pa.list_(_RS))])

_KIND_NAMES = pa.array(KINDS)
_STATUS_NAMES = pa.array(STATUSES)
_MIN_BLOCK = 16 << 20


#: parse one file's blocks on Arrow's thread pool; ingest turns it off in a worker that reads
#: one of several files at once (the files are then the parallelism, and a block-parallel parse
#: on top of it costs more CPU for nothing on 2 cores)
PARSE_THREADS: ContextVar[bool] = ContextVar("hopscope_parse_threads", default=True)


class NeedsSlowPath(Exception):
    """The file is not in the collector's canonical spelling (the message says why)."""


def _lengths(list_arr: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(list_arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _offsets(lengths: np.ndarray) -> pa.Array:
    out = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=out[1:])
    return pa.array(out)


def _id_bytes(arr: pa.Array, hex_len: int) -> np.ndarray | None:
    """The non-null ids' characters as an (ids, hex_len) uint8 matrix; None unless each has hex_len chars."""
    if arr.null_count:
        arr = arr.drop_null()
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    if offsets[-1] - offsets[0] != n * hex_len or np.any(np.diff(offsets) != hex_len):
        return None
    raw = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return raw.reshape(n, hex_len)


def _check_ids(arr: pa.Array, hex_len: int, what: str, allow_null: bool = False) -> pa.Array:
    """Lower-cased ids; anything but canonical hex sends the file to the slow path."""
    if not allow_null and arr.null_count:
        raise NeedsSlowPath(f"missing {what}")
    if len(arr) == 0 or arr.null_count == len(arr):
        return arr
    chars = _id_bytes(arr, hex_len)
    if chars is None:
        raise NeedsSlowPath(f"non-hex {what}")
    # The collector writes lower-case hex: one pass over the bytes proves it, and
    # lower-casing is skipped.
    raw = chars.reshape(-1)
    lower = unhex(raw, lower_only=True) is not None
    if not lower and unhex(raw, lower_only=False) is None:
        raise NeedsSlowPath(f"non-hex {what}")
    # all zeros: every character of a row is '0'
    if np.any(np.all(chars == 48, axis=1)):
        raise NeedsSlowPath(f"all-zero {what}")
    return arr if lower else pc.utf8_lower(arr)


def _enum(codes: pa.Array, names: pa.Array, what: str) -> pa.Array:
    codes = pc.fill_null(codes, 0)
    if len(codes) and (pc.min(codes).as_py() < 0 or pc.max(codes).as_py() >= len(names)):
        raise NeedsSlowPath(f"unknown {what}")
    return pc.take(names, codes)


def _max_bytes(arr: pa.Array) -> int:
    """The longest value of a string array, in bytes (0 when empty or all null)."""
    if len(arr) == 0 or arr.null_count == len(arr):
        return 0
    return pc.max(pc.binary_length(arr)).as_py() or 0


#: The tolerant reader's JSON parser (orjson) refuses documents nested deeper than 1024 levels (the
#: line is counted as too_deep); pyarrow.json reads them. Lines nested deeper than this go to it.
_TOLERANT_DEPTH = 1000
_DEPTH_BLOCK = 64 << 20


def _deepest(block: np.ndarray) -> int:
    """The deepest nesting of objects and arrays in whole JSON lines (brackets in strings not counted),
    vectorised. Exact for valid lines; a line that is not valid JSON fails pyarrow.json anyway."""
    folded = block | np.uint8(0x20)  # { [ -> {   and   } ] -> }
    brackets = np.flatnonzero((folded == 0x7B) | (folded == 0x7D))
    if len(brackets) == 0:
        return 0
    quotes = np.flatnonzero(block == 0x22)
    if len(quotes):
        escaped = np.flatnonzero(block[np.maximum(quotes - 1, 0)] == 0x5C)
        if len(escaped):
            keep = np.ones(len(quotes), dtype=bool)
            for i in escaped:  # a quote behind an odd run of backslashes is escaped (rare)
                p, run = int(quotes[i]) - 1, 0
                while p >= 0 and block[p] == 0x5C:
                    run, p = run + 1, p - 1
                keep[i] = run % 2 == 0
            quotes = quotes[keep]
        brackets = brackets[np.searchsorted(quotes, brackets) % 2 == 0]
    steps = np.where(folded[brackets] == 0x7B, 1, -1)
    return int(np.cumsum(steps).max()) if len(steps) else 0


def _check_depth(data: bytes | pa.Buffer, limit: int = _TOLERANT_DEPTH) -> None:
    """Decline a buffer with a line nested deeper than the tolerant reader parses (it counts that line)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    start = 0
    while start < len(raw):
        end = min(start + _DEPTH_BLOCK, len(raw))
        if end < len(raw):  # whole lines: strings and brackets start afresh on every line
            nl = np.flatnonzero(raw[start:end] == 10)
            if len(nl):
                end = start + int(nl[-1]) + 1
            else:
                more = np.flatnonzero(raw[end:] == 10)
                end = end + int(more[0]) + 1 if len(more) else len(raw)
        if _deepest(raw[start:end]) > limit:
            raise NeedsSlowPath(f"a line nested deeper than {limit} levels")
        start = end


#: A number this long overflows a double: the tolerant reader's parser refuses the line, pyarrow.json
#: reads it. (Digit runs in ids and times are at most 32 long.)
_LONG_NUMBER = re.compile(rb"[0-9]{300}")


def _check_lines(data: bytes | pa.Buffer, limit: int) -> None:
    """Decline a buffer with a line over `limit` bytes (the tolerant reader skips and counts it), or
    with a line that does not start with `{`: pyarrow.json dereferences a null pointer on a `null`
    at the root (apache/arrow#47409, pyarrow 26 still), and the collector writes objects only."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    starts = np.concatenate(([0], ends + 1))
    first = raw[starts[starts < len(raw)]]
    if np.any((first != 0x7B) & (first != 10)):
        raise NeedsSlowPath("a line that does not start with {")
    if len(raw) <= limit:
        return
    bounds = np.concatenate(([-1], ends, [len(raw)]))
    longest = int(np.max(np.diff(bounds))) - 1
    if longest > limit:
        raise NeedsSlowPath(f"a line of {longest} bytes is over max_record_bytes={limit}")


def _kv_split(
    kv_lists: pa.Array, lifted: frozenset[str], max_bytes: int = DEFAULT_LIMITS.max_attribute_bytes
) -> tuple[dict[str, pa.Array], pa.MapArray]:
    """From a list<{key, value: AnyValue}> per row: the lifted keys' values per row (null where absent;
    the last one where a key repeats, as the slow path's dict keeps it) and the map of the other keys.

    The keys are dictionary-encoded once (a few distinct keys over millions of entries), so
    finding the lifted ones is integer work and no full attribute map is built.
    """
    rows = len(kv_lists)
    lengths = _lengths(kv_lists)
    flat = pc.list_flatten(kv_lists)
    keys = pc.struct_field(flat, "key")
    v = pc.struct_field(flat, "value")
    # AnyValue as text; kinds no entry uses are left out of the coalesce
    ints = pc.struct_field(v, "intValue")
    if ints.null_count < len(ints):
        # the slow path writes an int64 back as str(int(text)): take only text that already is that
        given = ints.drop_null()
        canonical = pc.match_substring_regex(given, r"^(0|-?[1-9][0-9]{0,18})$")
        if not pc.all(canonical).as_py():
            raise NeedsSlowPath("an intValue not spelled as a canonical 64-bit integer")
        try:
            pc.cast(given, pa.int64())
        except pa.ArrowInvalid:
            raise NeedsSlowPath("an intValue past the int64 range") from None
    parts = []
    for name, to_text in (
        ("stringValue", False),
        ("intValue", False),
        ("doubleValue", True),
        ("boolValue", True),
        ("bytesValue", False),
    ):
        f = pc.struct_field(v, name)
        if f.null_count < len(f):
            parts.append(pc.cast(f, pa.string()) if to_text else f)
    if keys.null_count or (len(flat) and not parts):
        raise NeedsSlowPath("attribute value of a type the fast path does not read (array/kvlist/empty)")
    vals = (pc.coalesce(*parts) if len(parts) > 1 else parts[0]) if parts else pa.array([], pa.string())
    if vals.null_count:
        raise NeedsSlowPath("attribute value of a type the fast path does not read (array/kvlist/empty)")
    if max(_max_bytes(keys), _max_bytes(vals)) > max_bytes:
        raise NeedsSlowPath(f"an attribute over max_attribute_bytes={max_bytes}")
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    enc = pc.dictionary_encode(keys)
    names = enc.dictionary.to_pylist()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    found = {k: i for i, k in enumerate(names) if k in lifted}
    out: dict[str, pa.Array] = {}
    keep = np.ones(len(codes), dtype=bool)
    if found:
        row_of = np.repeat(np.arange(rows, dtype=np.int64), lengths)
        for key, code in found.items():
            hit = np.flatnonzero(codes == code)
            keep[hit] = False
            hit_rows = row_of[hit]
            last = np.ones(len(hit), dtype=bool)
            last[:-1] = hit_rows[1:] != hit_rows[:-1]
            idx = np.full(rows, -1, np.int64)
            idx[hit_rows[last]] = hit[last]
            out[key] = vals.take(pa.array(idx, mask=idx < 0))
        del row_of
    if keep.all():
        rest = pa.MapArray.from_arrays(pa.array(offsets.astype(np.int32)), keys, vals)
    else:
        kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=kept_before[1:])
        mask = pa.array(keep)
        rest = pa.MapArray.from_arrays(
            pa.array(kept_before[offsets].astype(np.int32)), keys.filter(mask), vals.filter(mask)
        )
    for key in lifted:
        if key not in out:
            out[key] = pa.nulls(rows, pa.string())
    return out, rest


def read_json_lines(data: bytes, source: str, limits: Limits = DEFAULT_LIMITS) -> pa.Table:
    """Parse a whole OTLP JSON-lines buffer; raise NeedsSlowPath if any part is not canonical
    or passes a limit (a line over max_record_bytes, a name or attribute over its bound).

    pyarrow.json parses blocks in parallel; each block's chunk is converted on its own (no
    copy of the parsed nested data into one array). It does not recurse on deep nesting (the
    tolerant reader applies max_depth where it matters: attribute values).
    """
    _check_lines(data, limits.max_record_bytes)
    _check_depth(data)
    if _LONG_NUMBER.search(memoryview(data)):
        raise NeedsSlowPath("a number of 300 digits or more")
    t = _parse(data)
    chunks = t.column("resourceSpans").chunks
    del t
    tables = [_convert(c, source, limits) for c in chunks]
    if not tables:
        return SPAN_SCHEMA.empty_table()
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _convert(rs_col: pa.Array, source: str, limits: Limits = DEFAULT_LIMITS) -> pa.Table:
    """One parsed chunk (list<ResourceSpans> per line) as a SPAN_SCHEMA table."""
    if rs_col.null_count:
        raise NeedsSlowPath("a line without resourceSpans")
    rs = pc.list_flatten(rs_col)
    scopes = pc.struct_field(rs, "scopeSpans")
    if scopes.null_count:
        raise NeedsSlowPath("a resourceSpans without scopeSpans")
    ss = pc.list_flatten(scopes)
    spans_l = pc.struct_field(ss, "spans")
    spans = pc.list_flatten(spans_l)
    n = len(spans)
    span_rs = pc.take(pc.list_parent_indices(scopes), pc.list_parent_indices(spans_l))

    trace_id = _check_ids(pc.struct_field(spans, "traceId"), 32, "traceId")
    span_id = _check_ids(pc.struct_field(spans, "spanId"), 16, "spanId")
    parent_raw = pc.struct_field(spans, "parentSpanId")
    # "" and all zeros both mean "no parent" (the slow path reads them the same way).
    no_parent = pc.fill_null(pc.match_substring_regex(parent_raw, "^0*$"), False)
    parent_raw = pc.if_else(no_parent, pa.scalar(None, pa.string()), parent_raw)
    parent = _check_ids(parent_raw, 16, "parentSpanId", allow_null=True)

    try:
        start = pc.cast(pc.fill_null(pc.struct_field(spans, "startTimeUnixNano"), "0"), pa.int64())
        end = pc.cast(pc.fill_null(pc.struct_field(spans, "endTimeUnixNano"), "0"), pa.int64())
    except pa.ArrowInvalid as e:
        raise NeedsSlowPath(f"timestamp: {e}") from None
    if n and (pc.any(pc.less(end, start)).as_py() or pc.min(start).as_py() < 0):
        raise NeedsSlowPath("a span ends before it starts")

    kind = _enum(pc.struct_field(spans, "kind"), _KIND_NAMES, "kind")
    status = _enum(pc.struct_field(pc.struct_field(spans, "status"), "code"), _STATUS_NAMES, "status")
    name = pc.fill_null(pc.struct_field(spans, "name"), "")
    if _max_bytes(name) > limits.max_name_bytes:
        raise NeedsSlowPath(f"a span name over max_name_bytes={limits.max_name_bytes}")

    links_l = pc.struct_field(spans, "links")
    links_flat = pc.list_flatten(links_l)
    link_struct = pa.StructArray.from_arrays(
        [
            _check_ids(pc.struct_field(links_flat, "traceId"), 32, "links.traceId"),
            _check_ids(pc.struct_field(links_flat, "spanId"), 16, "links.spanId"),
        ],
        names=["trace_id", "span_id"],
    )
    links = pa.ListArray.from_arrays(_offsets(_lengths(links_l)), link_struct)

    attr_lifted, attrs = _kv_split(
        pc.struct_field(spans, "attributes"), SPAN_LIFTED, limits.max_attribute_bytes
    )
    res_lifted, res_rest = _kv_split(
        pc.struct_field(pc.struct_field(rs, "resource"), "attributes"),
        RESOURCE_LIFTED,
        limits.max_attribute_bytes,
    )
    derived_text = pc.utf8_lower(pc.utf8_trim_whitespace(attr_lifted[ATTR_DERIVED]))
    derived = pc.fill_null(pc.is_in(derived_text, value_set=pa.array(["true", "1", "yes"])), False)
    span_rs_np = span_rs.to_numpy(zero_copy_only=False)

    columns = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "links": links,
        "name": name,
        "kind": kind,
        "start_ns": start,
        "end_ns": end,
        "status": status,
        "service": res_lifted[ATTR_SERVICE].take(span_rs_np),
        "stack": res_lifted[ATTR_STACK].take(span_rs_np),
        "workload": pc.coalesce(attr_lifted[ATTR_WORKLOAD], res_lifted[ATTR_WORKLOAD].take(span_rs_np)),
        "event_id": attr_lifted[ATTR_EVENT_ID],
        "hop": attr_lifted[ATTR_HOP],
        "derived": derived,
        "attributes": attrs,
        "resource": res_rest.take(span_rs_np),
        "source": pc.take(pa.array([source]), pa.array(np.zeros(n, dtype=np.int32))),
    }
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in SPAN_SCHEMA], schema=SPAN_SCHEMA)


def _parse(data: bytes) -> pa.Table:
    """pyarrow.json needs a block larger than the longest line: start at 16 MB, grow on demand."""
    block = _MIN_BLOCK
    while True:
        try:
            return pj.read_json(
                pa.BufferReader(data),
                read_options=pj.ReadOptions(block_size=block, use_threads=PARSE_THREADS.get()),
                parse_options=pj.ParseOptions(
                    explicit_schema=_FILE_SCHEMA, unexpected_field_behavior="ignore"
                ),
            )
        except pa.ArrowInvalid as e:
            if "straddl" in str(e) and block <= len(data):
                block = min(block * 4, len(data) + 1)
                continue
            raise NeedsSlowPath(f"pyarrow.json: {e}") from None
        except pa.ArrowNotImplementedError as e:
            raise NeedsSlowPath(f"pyarrow.json: {e}") from None
