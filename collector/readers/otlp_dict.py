"""OTLP JSON (protojson) decoded from Python dicts: the tolerant path.

Handles every variant protojson allows and producers write: `kind` and
`status.code` as ints or enum names, ids as hex (any case) or base64, 64-bit
ints as strings or numbers, lowerCamel or original snake_case field names,
`instrumentationLibrarySpans` (pre-1.0 OTLP, older Tempo), and
arrayValue / kvlistValue / bytesValue attributes (stored as JSON text / base64).
The fast pyarrow path (otlp_arrow.py) defers to this one for any file it cannot
take as a whole, so the two must agree on every column.
"""

from __future__ import annotations

import orjson

from hopscope.collector.errors import Problems
from hopscope.core import ids
from hopscope.core.schema import KINDS, STATUSES

from .rows import SpanRows, format_double


class _SpanProblem(Exception):
    def __init__(self, field: str, message: str, kind: str):
        super().__init__(message)
        self.field = field
        self.message = message
        self.kind = kind


def get(d: dict, camel: str, snake: str | None = None, default=None):
    """protojson parsers accept both the lowerCamel JSON name and the proto field name."""
    if camel in d:
        return d[camel]
    if snake is not None and snake in d:
        return d[snake]
    return default


def _any_to_py(v: object) -> object:
    if not isinstance(v, dict):
        return v
    if "stringValue" in v or "string_value" in v:
        return get(v, "stringValue", "string_value")
    if "intValue" in v or "int_value" in v:
        return int(get(v, "intValue", "int_value"))
    if "doubleValue" in v or "double_value" in v:
        return float(get(v, "doubleValue", "double_value"))
    if "boolValue" in v or "bool_value" in v:
        return bool(get(v, "boolValue", "bool_value"))
    if "bytesValue" in v or "bytes_value" in v:
        return get(v, "bytesValue", "bytes_value")
    if "arrayValue" in v or "array_value" in v:
        arr = get(v, "arrayValue", "array_value") or {}
        return [_any_to_py(x) for x in (arr.get("values") or [])]
    if "kvlistValue" in v or "kvlist_value" in v:
        kv = get(v, "kvlistValue", "kvlist_value") or {}
        return {x.get("key"): _any_to_py(x.get("value")) for x in (kv.get("values") or [])}
    return None


def any_value_to_str(v: object) -> str | None:
    """One AnyValue as the string the attribute maps hold."""
    if not isinstance(v, dict):
        raise ValueError(f"attribute value is not an object: {v!r}")
    if "stringValue" in v or "string_value" in v:
        s = get(v, "stringValue", "string_value")
        return None if s is None else str(s)
    if "intValue" in v or "int_value" in v:
        return str(int(get(v, "intValue", "int_value")))
    if "doubleValue" in v or "double_value" in v:
        return format_double(float(get(v, "doubleValue", "double_value")))
    if "boolValue" in v or "bool_value" in v:
        return "true" if get(v, "boolValue", "bool_value") else "false"
    if "bytesValue" in v or "bytes_value" in v:
        return str(get(v, "bytesValue", "bytes_value"))
    if any(k in v for k in ("arrayValue", "array_value", "kvlistValue", "kvlist_value")):
        return orjson.dumps(_any_to_py(v)).decode()
    return None


def attribute_pairs(kvs: object) -> list[tuple[str, str | None]]:
    """(key, text) in file order; a repeated key stays repeated, as in the fast path."""
    if kvs is None:
        return []
    if not isinstance(kvs, list):
        raise ValueError("attributes is not a list")
    out: list[tuple[str, str | None]] = []
    for kv in kvs:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise ValueError(f"attribute without a string key: {kv!r}")
        out.append((kv["key"], any_value_to_str(kv.get("value", {}))))
    return out


_KIND_BY_NAME = {k: k for k in KINDS} | {f"SPAN_KIND_{k}": k for k in KINDS}
_STATUS_BY_NAME = {s: s for s in STATUSES} | {f"STATUS_CODE_{s}": s for s in STATUSES}


def _enum(value: object, names: tuple[str, ...], by_name: dict[str, str], field: str) -> str:
    if value is None:
        return names[0]
    if isinstance(value, bool):
        raise _SpanProblem(field, f"not an enum value: {value!r}", "bad_field")
    if isinstance(value, int):
        if 0 <= value < len(names):
            return names[value]
    elif isinstance(value, str):
        if value in by_name:
            return by_name[value]
        if value.isdigit() and int(value) < len(names):
            return names[int(value)]
    raise _SpanProblem(field, f"unknown value {value!r}", "bad_field")


def _time(span: dict, camel: str, snake: str) -> int:
    raw = get(span, camel, snake)
    if raw is None:
        return 0  # protojson omits zero values
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = int(raw)
    except (TypeError, ValueError):
        raise _SpanProblem(camel, f"unparseable timestamp {raw!r}", "bad_timestamp") from None
    if value < 0 or value >= 1 << 63:
        raise _SpanProblem(camel, f"timestamp out of range {raw!r}", "bad_timestamp")
    return value


def _id(span: dict, camel: str, snake: str, hex_len: int) -> str:
    raw = get(span, camel, snake)
    if raw is None or raw == "":
        raise _SpanProblem(camel, "missing id", "missing_id")
    try:
        return ids.normalise(raw, hex_len)
    except ids.BadId as e:
        raise _SpanProblem(camel, str(e), "bad_id") from None


def _parent(span: dict) -> str | None:
    raw = get(span, "parentSpanId", "parent_span_id")
    if raw is None or raw == "" or (isinstance(raw, str) and raw.strip("0") == ""):
        return None
    try:
        return ids.normalise(raw, ids.SPAN_HEX)
    except ids.BadId as e:
        raise _SpanProblem("parentSpanId", str(e), "bad_id") from None


def _span(span: object, rows: SpanRows, resource: list[tuple[str, str | None]]) -> None:
    if not isinstance(span, dict):
        raise _SpanProblem("spans", f"span is not an object: {str(span)[:80]!r}", "malformed_record")
    trace_id = _id(span, "traceId", "trace_id", ids.TRACE_HEX)
    span_id = _id(span, "spanId", "span_id", ids.SPAN_HEX)
    parent = _parent(span)
    links: list[tuple[str, str]] = []
    for i, link in enumerate(span.get("links") or []):
        if not isinstance(link, dict):
            raise _SpanProblem(f"links[{i}]", "link is not an object", "malformed_record")
        try:
            links.append(
                (
                    _id(link, "traceId", "trace_id", ids.TRACE_HEX),
                    _id(link, "spanId", "span_id", ids.SPAN_HEX),
                )
            )
        except _SpanProblem as e:
            raise _SpanProblem(f"links[{i}].{e.field}", e.message, e.kind) from None
    start = _time(span, "startTimeUnixNano", "start_time_unix_nano")
    end = _time(span, "endTimeUnixNano", "end_time_unix_nano")
    if end < start:
        raise _SpanProblem("endTimeUnixNano", f"ends {start - end} ns before it starts", "end_before_start")
    kind = _enum(span.get("kind"), KINDS, _KIND_BY_NAME, "kind")
    status_obj = span.get("status") or {}
    if not isinstance(status_obj, dict):
        raise _SpanProblem("status", "status is not an object", "bad_field")
    status = _enum(status_obj.get("code"), STATUSES, _STATUS_BY_NAME, "status.code")
    try:
        attrs = attribute_pairs(span.get("attributes"))
    except (ValueError, TypeError) as e:
        raise _SpanProblem("attributes", str(e), "bad_field") from None
    name = span.get("name")
    rows.add(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        links=links,
        name="" if name is None else str(name),
        kind=kind,
        start_ns=start,
        end_ns=end,
        status=status,
        attributes=attrs,
        resource=resource,
    )


def decode_traces_data(
    doc: object, rows: SpanRows, problems: Problems, where: str, key: str = "resourceSpans"
) -> None:
    """Add the spans of one TracesData / ExportTraceServiceRequest dict; skip and count bad spans.

    `where` names the record ("line 12"); `key` is the top-level list (Tempo v1 says "batches").
    """
    src = rows.source
    if not isinstance(doc, dict):
        problems.skip(src, where, None, "record is not a JSON object", "malformed_record")
        return
    rs_list = get(doc, key, "resource_spans" if key == "resourceSpans" else None)
    if rs_list is None:
        rs_list = []
    if not isinstance(rs_list, list):
        problems.skip(src, where, key, "is not a list", "malformed_record")
        return
    for ri, rs in enumerate(rs_list):
        if not isinstance(rs, dict):
            problems.skip(src, where, f"{key}[{ri}]", "is not an object", "malformed_record")
            continue
        try:
            resource = attribute_pairs((rs.get("resource") or {}).get("attributes"))
        except (ValueError, TypeError, AttributeError) as e:
            problems.skip(src, where, f"{key}[{ri}].resource.attributes", str(e), "bad_field")
            continue
        scopes = get(rs, "scopeSpans", "scope_spans")
        if scopes is None:
            scopes = get(rs, "instrumentationLibrarySpans", "instrumentation_library_spans") or []
        for si, ss in enumerate(scopes):
            spans = ss.get("spans") if isinstance(ss, dict) else None
            for pi, span in enumerate(spans or []):
                try:
                    _span(span, rows, resource)
                except _SpanProblem as e:
                    label = f"{key}[{ri}].scopeSpans[{si}].spans[{pi}].{e.field}"
                    problems.skip(src, where, label, e.message, e.kind)
