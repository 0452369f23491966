"""OTLP JSON (protojson) decoded from Python dicts: the tolerant path.

Handles every variant protojson allows and producers write: `kind` and
`status.code` as ints or enum names, ids as hex (any case) or base64, 64-bit
ints as strings or numbers, lowerCamel or original snake_case field names,
`instrumentationLibrarySpans` (pre-1.0 OTLP, older Tempo), and
arrayValue / kvlistValue / bytesValue attributes (stored as JSON text / base64).
The fast pyarrow path (otlp_arrow.py) defers to this one for any file it cannot
take as a whole, so the two must agree on every column.

Every field's JSON type is checked as it is read (a number where a list belongs, a list
where an object belongs, a digit outside ASCII in an enum…): the span (or the
resourceSpans / scopeSpans entry that holds it) is skipped and counted, and the rest kept.
"""

from __future__ import annotations

import re

import orjson

from hopscope.collector.errors import BadRecord, Problems, short
from hopscope.core import ids
from hopscope.core.schema import KINDS, STATUSES

from .rows import INT64_MAX, SpanRows, format_double

# ASCII digits only: str.isdigit() and int() also take "²", "٣" and full-width digits
_INT = re.compile(r"-?[0-9]{1,20}")
_UINT = re.compile(r"[0-9]{1,20}")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_SPECIAL_DOUBLES = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_INT64_MIN = -(1 << 63)


def get(d: dict, camel: str, snake: str | None = None, default=None):
    """protojson parsers accept both the lowerCamel JSON name and the proto field name."""
    if camel in d:
        return d[camel]
    if snake is not None and snake in d:
        return d[snake]
    return default


def _obj(value: object, what: str) -> dict:
    """An object field; null means absent (protojson's default)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRecord(what, f"is not an object: {short(value)}")
    return value


def _list(value: object, what: str) -> list:
    """A repeated field; null means empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRecord(what, f"is not a list: {short(value)}")
    return value


def _int64(raw: object, what: str) -> int:
    """protojson int64: a JSON number (integral) or a decimal string, within int64."""
    if isinstance(raw, bool):
        raise BadRecord(what, f"not an integer: {short(raw)}")
    if isinstance(raw, int):
        value = raw
    elif (isinstance(raw, float) and raw.is_integer()) or (isinstance(raw, str) and _INT.fullmatch(raw)):
        value = int(raw)
    else:
        raise BadRecord(what, f"not an integer: {short(raw)}")
    if not _INT64_MIN <= value <= INT64_MAX:
        raise BadRecord(what, f"out of the int64 range: {short(raw)}")
    return value


def _double(raw: object, what: str) -> float:
    """protojson double: a JSON number, or a string spelling one ("NaN", "Infinity", "1.5")."""
    if isinstance(raw, bool):
        raise BadRecord(what, f"not a number: {short(raw)}")
    if isinstance(raw, int | float):
        try:
            return float(raw)
        except OverflowError:
            raise BadRecord(what, f"out of the double range: {short(raw)}") from None
    if isinstance(raw, str):
        if raw in _SPECIAL_DOUBLES:
            return _SPECIAL_DOUBLES[raw]
        if _NUMBER.fullmatch(raw):
            return float(raw)
    raise BadRecord(what, f"not a number: {short(raw)}")


def _text(raw: object, what: str) -> str:
    if not isinstance(raw, str):
        raise BadRecord(what, f"not a string: {short(raw)}")
    return raw


def _any_to_py(v: object, depth: int, max_depth: int) -> object:
    """An AnyValue as the Python value its JSON text spells (arrays and kvlists nest, bounded)."""
    if depth > max_depth:
        raise BadRecord("value", f"attribute value nested deeper than {max_depth} levels", "too_deep")
    if v is None:
        return None
    if not isinstance(v, dict):
        raise BadRecord("value", f"AnyValue is not an object: {short(v)}")
    for camel, snake, convert in _SCALARS:
        if camel in v or snake in v:
            raw = get(v, camel, snake)
            return None if raw is None else convert(raw, camel)
    if "arrayValue" in v or "array_value" in v:
        arr = _obj(get(v, "arrayValue", "array_value"), "arrayValue")
        return [_any_to_py(x, depth + 1, max_depth) for x in _list(arr.get("values"), "arrayValue.values")]
    if "kvlistValue" in v or "kvlist_value" in v:
        kv = _obj(get(v, "kvlistValue", "kvlist_value"), "kvlistValue")
        out = {}
        for x in _list(kv.get("values"), "kvlistValue.values"):
            if not isinstance(x, dict) or not isinstance(x.get("key"), str):
                raise BadRecord("kvlistValue.values", f"entry without a string key: {short(x)}")
            out[x["key"]] = _any_to_py(x.get("value"), depth + 1, max_depth)
        return out
    return None


def _json_double(raw: object, what: str) -> float | None:
    x = _double(raw, what)
    return x if x == x and x not in (float("inf"), float("-inf")) else None  # JSON has no NaN/inf


def _bool(raw: object, what: str = "boolValue") -> bool:
    if not isinstance(raw, bool):
        raise BadRecord(what, f"not a boolean: {short(raw)}")
    return raw


#: AnyValue's scalar fields in the order they are looked for, and their checks (nested values)
_SCALARS = (
    ("stringValue", "string_value", _text),
    ("intValue", "int_value", _int64),
    ("doubleValue", "double_value", _json_double),
    ("boolValue", "bool_value", _bool),
    ("bytesValue", "bytes_value", _text),
)


def any_value_to_str(v: object, max_depth: int = 64) -> str | None:
    """One AnyValue as the string the attribute maps hold (BadRecord if it is not a valid AnyValue)."""
    if v is None:
        return None  # protojson: null is the default, an unset value
    if not isinstance(v, dict):
        raise BadRecord("value", f"attribute value is not an object: {short(v)}")
    for camel, snake, _ in _SCALARS:
        if camel in v or snake in v:
            raw = get(v, camel, snake)
            if raw is None:
                return None  # null: the field's default, as unset
            if camel == "stringValue" or camel == "bytesValue":
                return _text(raw, camel)
            if camel == "intValue":
                return str(_int64(raw, camel))
            if camel == "doubleValue":
                return format_double(_double(raw, camel))
            return "true" if _bool(raw) else "false"
    if any(k in v for k in ("arrayValue", "array_value", "kvlistValue", "kvlist_value")):
        try:
            return orjson.dumps(_any_to_py(v, 1, max_depth)).decode()
        except orjson.JSONEncodeError as e:  # e.g. orjson's own nesting bound
            raise BadRecord("value", f"array/kvlist value not writable as JSON: {e}", "too_deep") from None
    return None


def attribute_pairs(kvs: object, max_depth: int = 64) -> list[tuple[str, str | None]]:
    """(key, text) in file order; a repeated key stays repeated, as in the fast path."""
    out: list[tuple[str, str | None]] = []
    for i, kv in enumerate(_list(kvs, "attributes")):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise BadRecord(f"attributes[{i}]", f"attribute without a string key: {short(kv)}")
        try:
            out.append((kv["key"], any_value_to_str(kv.get("value"), max_depth)))
        except BadRecord as e:
            raise e.under(f"attributes[{i}]") from None
    return out


_KIND_BY_NAME = {k: k for k in KINDS} | {f"SPAN_KIND_{k}": k for k in KINDS}
_STATUS_BY_NAME = {s: s for s in STATUSES} | {f"STATUS_CODE_{s}": s for s in STATUSES}


def _enum(value: object, names: tuple[str, ...], by_name: dict[str, str], field: str) -> str:
    if value is None:
        return names[0]
    if isinstance(value, bool):
        raise BadRecord(field, f"not an enum value: {short(value)}")
    if isinstance(value, int):
        if 0 <= value < len(names):
            return names[value]
    elif isinstance(value, str):
        if value in by_name:
            return by_name[value]
        if _UINT.fullmatch(value) and int(value) < len(names):
            return names[int(value)]
    raise BadRecord(field, f"unknown value {short(value)}")


def _time(span: dict, camel: str, snake: str) -> int:
    """protojson fixed64 nanoseconds: a decimal string or an integral JSON number, 0 … 2^63-1."""
    raw = get(span, camel, snake)
    if raw is None:
        return 0  # protojson omits zero values
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif (isinstance(raw, float) and raw.is_integer()) or (isinstance(raw, str) and _INT.fullmatch(raw)):
        value = int(raw)
    else:
        raise BadRecord(camel, f"unparseable timestamp {short(raw)}", "bad_timestamp")
    if not 0 <= value <= INT64_MAX:
        raise BadRecord(camel, f"timestamp out of range {short(raw)}", "bad_timestamp")
    return value


def _id(obj: dict, camel: str, snake: str, hex_len: int) -> str:
    raw = get(obj, camel, snake)
    if raw is None or raw == "":
        raise BadRecord(camel, "missing id", "missing_id")
    try:
        return ids.normalise(raw, hex_len)
    except ids.BadId as e:
        raise BadRecord(camel, str(e), "bad_id") from None


def _parent(span: dict) -> str | None:
    raw = get(span, "parentSpanId", "parent_span_id")
    if raw is None or raw == "" or (isinstance(raw, str) and raw.strip("0") == ""):
        return None
    try:
        return ids.normalise(raw, ids.SPAN_HEX)
    except ids.BadId as e:
        raise BadRecord("parentSpanId", str(e), "bad_id") from None


def _span(span: object, rows: SpanRows, resource: list[tuple[str, str | None]], max_depth: int) -> None:
    if not isinstance(span, dict):
        raise BadRecord("", f"span is not an object: {short(span)}", "malformed_record")
    trace_id = _id(span, "traceId", "trace_id", ids.TRACE_HEX)
    span_id = _id(span, "spanId", "span_id", ids.SPAN_HEX)
    parent = _parent(span)
    links: list[tuple[str, str]] = []
    for i, link in enumerate(_list(span.get("links"), "links")):
        if not isinstance(link, dict):
            raise BadRecord(f"links[{i}]", "link is not an object", "malformed_record")
        try:
            links.append(
                (
                    _id(link, "traceId", "trace_id", ids.TRACE_HEX),
                    _id(link, "spanId", "span_id", ids.SPAN_HEX),
                )
            )
        except BadRecord as e:
            raise e.under(f"links[{i}]") from None
    start = _time(span, "startTimeUnixNano", "start_time_unix_nano")
    end = _time(span, "endTimeUnixNano", "end_time_unix_nano")
    if end < start:
        raise BadRecord("endTimeUnixNano", f"ends {start - end} ns before it starts", "end_before_start")
    kind = _enum(span.get("kind"), KINDS, _KIND_BY_NAME, "kind")
    status_obj = _obj(span.get("status"), "status")
    status = _enum(status_obj.get("code"), STATUSES, _STATUS_BY_NAME, "status.code")
    attrs = attribute_pairs(span.get("attributes"), max_depth)
    name = span.get("name")
    rows.add(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        links=links,
        name="" if name is None else _text(name, "name"),
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
    A bad span is one problem; a resourceSpans / scopeSpans entry that cannot be read (its
    resource, its list of scopes or spans of the wrong type) is one problem for all it holds.
    """
    src = rows.source
    max_depth = problems.limits.max_depth
    if not isinstance(doc, dict):
        problems.skip(src, where, None, f"record is not a JSON object: {short(doc)}", "malformed_record")
        return
    rs_list = get(doc, key, "resource_spans" if key == "resourceSpans" else None)
    if rs_list is None:
        rs_list = []
    if not isinstance(rs_list, list):
        problems.skip(src, where, key, f"is not a list: {short(rs_list)}", "malformed_record")
        return
    for ri, rs in enumerate(rs_list):
        label = f"{key}[{ri}]"
        try:
            if not isinstance(rs, dict):
                raise BadRecord("", f"is not an object: {short(rs)}", "malformed_record")
            resource = attribute_pairs(_obj(rs.get("resource"), "resource").get("attributes"), max_depth)
            scopes = get(rs, "scopeSpans", "scope_spans")
            scopes_name = "scopeSpans"
            if scopes is None:
                scopes = get(rs, "instrumentationLibrarySpans", "instrumentation_library_spans")
                scopes_name = "instrumentationLibrarySpans"
            scopes = _list(scopes, scopes_name)
        except BadRecord as e:
            problems.skip(src, where, e.under(label).field, e.message, e.kind)
            continue
        except Exception as e:  # a reader bug: counted, never fatal
            problems.unexpected(src, where, label, e)
            continue
        for si, ss in enumerate(scopes):
            scope_label = f"{label}.scopeSpans[{si}]"
            try:
                if not isinstance(ss, dict):
                    raise BadRecord("", f"is not an object: {short(ss)}", "malformed_record")
                spans = _list(ss.get("spans"), "spans")
            except BadRecord as e:
                problems.skip(src, where, e.under(scope_label).field, e.message, e.kind)
                continue
            for pi, span in enumerate(spans):
                try:
                    _span(span, rows, resource, max_depth)
                except BadRecord as e:
                    problems.skip(src, where, e.under(f"{scope_label}.spans[{pi}]").field, e.message, e.kind)
                except Exception as e:  # a reader bug: counted, never fatal
                    problems.unexpected(src, where, f"{scope_label}.spans[{pi}]", e)
