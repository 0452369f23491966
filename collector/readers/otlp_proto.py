"""OTLP protobuf in the file exporter's `format: proto` framing: [4-byte big-endian length][ExportTraceServiceRequest]...

A frame whose length runs past the end of the file, or whose message does not decode, is
counted, and the reader resyncs: it looks for the next place where a chain of plausible
frames starts (a length that fits, a message that begins with field 1 and decodes) and goes
on from there, so one bad length prefix loses only the bytes up to the next good frame.
"""

from __future__ import annotations

import base64
import struct

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hopscope.collector.errors import BadRecord, Problems, short
from hopscope.core import ids
from hopscope.core.schema import KINDS, STATUSES

from .rows import SpanRows, format_double

#: An ExportTraceServiceRequest starts with field 1 (resource_spans), wire type 2: byte 0x0a.
_FIRST_BYTE = 0x0A


def _plausible(data: bytes, pos: int, limit: int) -> int | None:
    """The end of a plausible frame at `pos` (a length that fits, a message starting with field 1), else None."""
    if pos + 4 > len(data):
        return None
    (length,) = struct.unpack_from(">I", data, pos)
    end = pos + 4 + length
    if end > len(data) or length > limit or (length and data[pos + 4] != _FIRST_BYTE):
        return None
    return end


def _decodes(data: bytes, pos: int, end: int) -> bool:
    try:
        ExportTraceServiceRequest.FromString(data[pos + 4 : end])
    except DecodeError:
        return False
    return True


def resync(data: bytes, after: int, limit: int) -> int | None:
    """The first position past `after` where two plausible frames follow each other (or one ends the
    file) and the first decodes: where reading can go on after a bad frame. None if there is none."""
    at = after + 4
    while True:
        at = data.find(b"\x0a", at + 1)
        if at < 0:
            return None
        pos = at - 4
        end = _plausible(data, pos, limit)
        if end is None:
            continue
        if end != len(data) and _plausible(data, end, limit) is None:
            continue
        if _decodes(data, pos, end):
            return pos


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


def _span(sp, resource: list, rows: SpanRows) -> None:
    if not sp.trace_id or not sp.span_id:
        raise BadRecord("trace_id" if not sp.trace_id else "span_id", "missing id", "missing_id")
    try:
        raw_t, raw_s = sp.trace_id, sp.span_id
        trace_id = raw_t.hex() if len(raw_t) == 16 else ids.from_raw(raw_t, ids.TRACE_HEX)
        span_id = raw_s.hex() if len(raw_s) == 8 else ids.from_raw(raw_s, ids.SPAN_HEX)
        if not raw_t.strip(b"\0") or not raw_s.strip(b"\0"):
            raise ids.BadId("all-zero trace or span id")
        parent = ids.from_raw(sp.parent_span_id, ids.SPAN_HEX) if sp.parent_span_id.strip(b"\0") else None
        links = [
            (ids.from_raw(lk.trace_id, ids.TRACE_HEX), ids.from_raw(lk.span_id, ids.SPAN_HEX))
            for lk in sp.links
        ]
    except ids.BadId as e:
        raise BadRecord("ids", str(e), "bad_id") from None
    start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
    if end < start:
        raise BadRecord("end_time_unix_nano", f"ends {start - end} ns before it starts", "end_before_start")
    if not 0 <= sp.kind < len(KINDS) or not 0 <= sp.status.code < len(STATUSES):
        raise BadRecord("kind/status", f"unknown enum value {short((sp.kind, sp.status.code))}", "bad_field")
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


def decode_request(msg: bytes, rows: SpanRows, problems: Problems, where: str) -> bool:
    """Add one request's spans (bad spans counted); False, and nothing added, if it does not decode."""
    try:
        req = ExportTraceServiceRequest.FromString(msg)
    except DecodeError:
        return False
    src = rows.source
    for ri, rs in enumerate(req.resource_spans):
        try:
            resource = _attrs(rs.resource.attributes)
        except Exception as e:  # a reader bug: counted, never fatal
            problems.unexpected(src, where, f"resource_spans[{ri}].resource", e)
            continue
        for si, ss in enumerate(rs.scope_spans):
            for pi, sp in enumerate(ss.spans):
                label = f"resource_spans[{ri}].scope_spans[{si}].spans[{pi}]"
                try:
                    _span(sp, resource, rows)
                except BadRecord as e:
                    problems.skip(src, where, e.under(label).field, e.message, e.kind)
                except Exception as e:  # a reader bug: counted, never fatal
                    problems.unexpected(src, where, label, e)
    return True


def read_framed(data: bytes, source: str, problems: Problems, rows: SpanRows | None = None) -> SpanRows:
    """Every frame's spans; bad frames are counted and skipped, the rest kept.

    A frame longer than `max_record_bytes` is skipped (too_large). A length that runs past the
    end, or a message that does not decode, is counted once and reading resyncs at the next
    good frame (for a message that does not decode, possibly inside it: its length may be wrong).
    """
    rows = rows if rows is not None else SpanRows(source, problems)
    limit = problems.limits.max_record_bytes
    view = memoryview(data)
    pos, n, size = 0, 0, len(data)
    while pos < size:
        n += 1
        where = f"record {n} at byte {pos}"
        if pos + 4 > size:
            problems.skip(
                source, where, "length", f"truncated length prefix ({size - pos} bytes left)", "bad_frame"
            )
            break
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 4 + length
        if end > size:
            nxt = resync(data, pos, limit)
            tail = "; nothing readable after it" if nxt is None else f"; resynced at byte {nxt}"
            problems.skip(
                source,
                where,
                "length",
                f"frame of {length} bytes runs past the end of the file ({size - pos - 4} left){tail}",
                "bad_frame",
            )
            if nxt is None:
                break
            pos = nxt
            continue
        if length > limit:
            problems.skip(
                source,
                where,
                "length",
                f"frame of {length} bytes is over max_record_bytes={limit}",
                "too_large",
            )
            pos = end
            continue
        if not decode_request(view[pos + 4 : end].tobytes(), rows, problems, where):
            # a length prefix that was wrong but fit: the next good frame may start inside this one
            nxt = resync(data, pos, limit)
            problems.skip(source, where, None, "not an ExportTraceServiceRequest", "bad_protobuf")
            pos = nxt if nxt is not None and nxt < end else end
            continue
        pos = end
    return rows
