"""The fast path for OTLP JSON lines: pyarrow.json with an explicit schema, then vectorised columns.

It takes a file only as a whole and only in the spelling the collector's file
exporter writes (hex ids, int kinds, string 64-bit ints, scalar attribute
values). Anything else — a bad line, a base64 id, an enum name, an arrayValue
attribute, an end before a start — raises `NeedsSlowPath`, and the caller reads
the file again line by line (otlp_dict.py), which names every bad line and field.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from hopscope.collector.schema import (
    ATTR_DERIVED,
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_SERVICE,
    ATTR_STACK,
    ATTR_WORKLOAD,
    KINDS,
    SPAN_SCHEMA,
    STATUSES,
)

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


class NeedsSlowPath(Exception):
    """The file is not in the collector's canonical spelling (the message says why)."""


def _lengths(list_arr: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(list_arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _offsets(lengths: np.ndarray) -> pa.Array:
    out = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=out[1:])
    return pa.array(out)


def _check_ids(arr: pa.Array, hex_len: int, what: str, allow_null: bool = False) -> pa.Array:
    """Lower-cased ids; anything but canonical hex sends the file to the slow path."""
    if not allow_null and arr.null_count:
        raise NeedsSlowPath(f"missing {what}")
    # The collector writes lower-case hex: one regex pass proves it, and lower-casing is skipped.
    lower_ok = pc.fill_null(pc.match_substring_regex(arr, f"^[0-9a-f]{{{hex_len}}}$"), True)
    lower = bool(pc.all(lower_ok).as_py())
    if not lower:
        ok = pc.match_substring_regex(arr, f"^[0-9a-fA-F]{{{hex_len}}}$")
        if not pc.all(pc.fill_null(ok, True)).as_py():
            raise NeedsSlowPath(f"non-hex {what}")
    # Lengths are exact here, so "all zeros" is one string comparison.
    if pc.any(pc.fill_null(pc.equal(arr, "0" * hex_len), False)).as_py():
        raise NeedsSlowPath(f"all-zero {what}")
    return arr if lower else pc.utf8_lower(arr)


def _enum(codes: pa.Array, names: pa.Array, what: str) -> pa.Array:
    codes = pc.fill_null(codes, 0)
    if len(codes) and (pc.min(codes).as_py() < 0 or pc.max(codes).as_py() >= len(names)):
        raise NeedsSlowPath(f"unknown {what}")
    return pc.take(names, codes)


def _kv_map(kv_lists: pa.Array, lifted: frozenset[str]) -> tuple[pa.MapArray, pa.MapArray]:
    """(full map for lookups, map without the lifted keys) from a list<{key, value: AnyValue}>."""
    lengths = _lengths(kv_lists)
    flat = pc.list_flatten(kv_lists)
    keys = pc.struct_field(flat, "key")
    v = pc.struct_field(flat, "value")
    vals = pc.coalesce(
        pc.struct_field(v, "stringValue"),
        pc.struct_field(v, "intValue"),
        pc.cast(pc.struct_field(v, "doubleValue"), pa.string()),
        pc.cast(pc.struct_field(v, "boolValue"), pa.string()),
        pc.struct_field(v, "bytesValue"),
    )
    if keys.null_count or vals.null_count:
        raise NeedsSlowPath("attribute value of a type the fast path does not read (array/kvlist/empty)")
    full = pa.MapArray.from_arrays(_offsets(lengths), keys, vals)
    keep = pc.invert(pc.is_in(keys, value_set=pa.array(sorted(lifted))))
    keep_np = keep.to_numpy(zero_copy_only=False).astype(np.int64)
    kept_before = np.concatenate([[0], np.cumsum(keep_np)])
    new_offsets = kept_before[np.concatenate([[0], np.cumsum(lengths)])]
    rest = pa.MapArray.from_arrays(
        pa.array(new_offsets.astype(np.int32)), pc.filter(keys, keep), pc.filter(vals, keep)
    )
    return full, rest


def _lookup(m: pa.MapArray, key: str) -> pa.Array:
    # "last" matches the dict semantics of the slow path when a key repeats.
    return pc.map_lookup(m, pa.scalar(key), "last")


def read_json_lines(data: bytes, source: str) -> pa.Table:
    """Parse a whole OTLP JSON-lines buffer; raise NeedsSlowPath if any part is not canonical."""
    t = _parse(data)
    rs_col = t.column("resourceSpans").combine_chunks()
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

    attrs_full, attrs = _kv_map(pc.struct_field(spans, "attributes"), SPAN_LIFTED)
    res_full, res_rest = _kv_map(
        pc.struct_field(pc.struct_field(rs, "resource"), "attributes"), RESOURCE_LIFTED
    )
    derived_text = pc.utf8_lower(pc.utf8_trim_whitespace(_lookup(attrs_full, ATTR_DERIVED)))
    derived = pc.fill_null(pc.is_in(derived_text, value_set=pa.array(["true", "1", "yes"])), False)

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
        "service": pc.take(_lookup(res_full, ATTR_SERVICE), span_rs),
        "stack": pc.take(_lookup(res_full, ATTR_STACK), span_rs),
        "workload": pc.coalesce(
            _lookup(attrs_full, ATTR_WORKLOAD), pc.take(_lookup(res_full, ATTR_WORKLOAD), span_rs)
        ),
        "event_id": _lookup(attrs_full, ATTR_EVENT_ID),
        "hop": _lookup(attrs_full, ATTR_HOP),
        "derived": derived,
        "attributes": attrs,
        "resource": pc.take(res_rest, span_rs),
        "source": pc.take(pa.array([source]), pa.array(np.zeros(n, dtype=np.int32))),
    }
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in SPAN_SCHEMA], schema=SPAN_SCHEMA)


def _parse(data: bytes) -> pa.Table:
    """pyarrow.json needs a block larger than the longest line: start at 16 MB, grow on demand."""
    block = _MIN_BLOCK
    while True:
        try:
            return pj.read_json(
                io.BytesIO(data),
                read_options=pj.ReadOptions(block_size=block),
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
