"""OTLP protobuf in the file exporter's `format: proto` framing: [4-byte big-endian length][ExportTraceServiceRequest]..."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.collector.errors import Problems
from hopscope.core import ids
from hopscope.core.schema import KINDS, STATUSES

from .rows import SpanRows, format_double


def frames(data: bytes, source: str, problems: Problems) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based record number, message bytes); a truncated frame ends the file (counted)."""
    view = memoryview(data)
    pos, n = 0, 0
    while pos < len(data):
        n += 1
        if pos + 4 > len(data):
            problems.skip(
                source, f"record {n} at byte {pos}", "length", "truncated length prefix", "bad_frame"
            )
            return
        (length,) = struct.unpack_from(">I", data, pos)
        if pos + 4 + length > len(data):
            problems.skip(
                source,
                f"record {n} at byte {pos}",
                "length",
                f"frame of {length} bytes runs past the end of the file ({len(data) - pos - 4} left)",
                "bad_frame",
            )
            return
        yield n, view[pos + 4 : pos + 4 + length].tobytes()
        pos += 4 + length


def _any_py(v) -> object:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_py(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_py(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, which)


def _any_str(v) -> str | None:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return str(v.int_value)
    if which == "double_value":
        return format_double(v.double_value)
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if which is None:
        return None
    return orjson.dumps(_any_py(v)).decode()


def _attrs(kvs) -> list[tuple[str, str | None]]:
    # Most values are strings: skip the generic dispatch for them.
    return [
        (
            kv.key,
            kv.value.string_value if kv.value.WhichOneof("value") == "string_value" else _any_str(kv.value),
        )
        for kv in kvs
    ]


def decode_request(msg: bytes, rows: SpanRows, problems: Problems, where: str) -> None:
    src = rows.source
    try:
        req = ExportTraceServiceRequest.FromString(msg)
    except DecodeError as e:
        problems.skip(src, where, None, f"not an ExportTraceServiceRequest: {e}", "bad_protobuf")
        return
    for ri, rs in enumerate(req.resource_spans):
        resource = _attrs(rs.resource.attributes)
        for si, ss in enumerate(rs.scope_spans):
            for pi, sp in enumerate(ss.spans):
                label = f"resource_spans[{ri}].scope_spans[{si}].spans[{pi}]"
                if not sp.trace_id or not sp.span_id:
                    field = "trace_id" if not sp.trace_id else "span_id"
                    problems.skip(src, where, f"{label}.{field}", "missing id", "missing_id")
                    continue
                try:
                    raw_t, raw_s = sp.trace_id, sp.span_id
                    trace_id = raw_t.hex() if len(raw_t) == 16 else ids.from_raw(raw_t, ids.TRACE_HEX)
                    span_id = raw_s.hex() if len(raw_s) == 8 else ids.from_raw(raw_s, ids.SPAN_HEX)
                    if not raw_t.strip(b"\0") or not raw_s.strip(b"\0"):
                        raise ids.BadId("all-zero trace or span id")
                    parent = (
                        ids.from_raw(sp.parent_span_id, ids.SPAN_HEX)
                        if sp.parent_span_id.strip(b"\0")
                        else None
                    )
                    links = [
                        (ids.from_raw(lk.trace_id, ids.TRACE_HEX), ids.from_raw(lk.span_id, ids.SPAN_HEX))
                        for lk in sp.links
                    ]
                except ids.BadId as e:
                    problems.skip(src, where, f"{label} ids", str(e), "bad_id")
                    continue
                start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
                if end < start:
                    problems.skip(
                        src,
                        where,
                        f"{label}.end_time_unix_nano",
                        f"ends {start - end} ns before it starts",
                        "end_before_start",
                    )
                    continue
                if not 0 <= sp.kind < len(KINDS) or not 0 <= sp.status.code < len(STATUSES):
                    problems.skip(src, where, f"{label}.kind/status", "unknown enum value", "bad_field")
                    continue
                rows.add(
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_span_id=parent,
                    links=links,
                    name=sp.name,
                    kind=KINDS[sp.kind],
                    start_ns=start,
                    end_ns=end,
                    status=STATUSES[sp.status.code],
                    attributes=_attrs(sp.attributes),
                    resource=resource,
                )


def read_framed(data: bytes, source: str, problems: Problems) -> SpanRows:
    rows = SpanRows(source)
    for n, msg in frames(data, source, problems):
        decode_request(msg, rows, problems, f"record {n}")
    return rows
