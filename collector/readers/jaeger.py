"""Jaeger's legacy query-API / UI JSON: `{"data": [trace, ...]}` or `{"data": {trace}}`.

A trace holds `spans` (µs `startTime`/`duration`, `references`, `tags`) and
`processes` (`serviceName`, `tags`); a span may carry its process inline
(`process`). The first CHILD_OF reference is the parent; FOLLOWS_FROM and any
further CHILD_OF references become links. Tags `span.kind`, `otel.status_code`
and `error` become the kind and status columns.

Ids: Jaeger writes hex without leading zeros, so they are left-padded. The
hand-made CRISP test cases use labels such as "A", "G", "B1"; a label that is
not hex gets a stable id hashed from it (counted under `id_not_hex_hashed`,
original kept in attribute `jaeger.original_span_id`), so references still match.
"""

from __future__ import annotations

from hopscope.collector.errors import Problems
from hopscope.core import ids
from hopscope.core.attributes import ATTR_SERVICE

from .rows import SpanRows, format_double

_KIND_TAG = {
    "client": "CLIENT",
    "server": "SERVER",
    "producer": "PRODUCER",
    "consumer": "CONSUMER",
    "internal": "INTERNAL",
}


class _Bad(Exception):
    def __init__(self, field: str, message: str, kind: str):
        super().__init__(message)
        self.field, self.message, self.kind = field, message, kind


def _tag_value(tag: dict) -> str:
    v = tag.get("value")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format_double(v)
    return str(v)


def _tags(tags: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in tags or []:
        if isinstance(t, dict) and isinstance(t.get("key"), str):
            out[t["key"]] = _tag_value(t)
    return out


def _id(raw: object, hex_len: int, field: str, problems: Problems) -> str:
    if raw is None or raw == "":
        raise _Bad(field, "missing id", "missing_id")
    padded = ids.pad_hex(raw, hex_len)
    if padded is not None:
        return padded
    if not isinstance(raw, str):
        raise _Bad(field, f"id {raw!r} is not a string", "bad_id")
    problems.adjust("id_not_hex_hashed")
    return ids.hashed(raw, hex_len, salt="jaeger-label:")


def _micros(span: dict, field: str) -> int:
    v = span.get(field)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise _Bad(field, f"missing or unparseable µs value {v!r}", "bad_timestamp")
    return v


def _span(sp: dict, processes: dict, rows: SpanRows, problems: Problems) -> None:
    trace_id = _id(sp.get("traceID"), ids.TRACE_HEX, "traceID", problems)
    raw_span_id = sp.get("spanID")
    span_id = _id(raw_span_id, ids.SPAN_HEX, "spanID", problems)
    start = _micros(sp, "startTime")
    duration = _micros(sp, "duration")
    parent = None
    links: list[tuple[str, str]] = []
    refs = list(sp.get("references") or [])
    if sp.get("parentSpanID") and str(sp["parentSpanID"]).strip("0"):
        refs.insert(0, {"refType": "CHILD_OF", "traceID": sp.get("traceID"), "spanID": sp["parentSpanID"]})
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise _Bad(f"references[{i}]", "reference is not an object", "malformed_record")
        rt = _id(ref.get("traceID"), ids.TRACE_HEX, f"references[{i}].traceID", problems)
        rs = _id(ref.get("spanID"), ids.SPAN_HEX, f"references[{i}].spanID", problems)
        ref_type = ref.get("refType", "CHILD_OF")
        if ref_type not in ("CHILD_OF", "FOLLOWS_FROM"):
            raise _Bad(f"references[{i}].refType", f"unknown refType {ref_type!r}", "bad_field")
        if ref_type == "CHILD_OF" and parent is None and rt == trace_id:
            parent = rs
        elif (rt, rs) != (trace_id, parent):
            links.append((rt, rs))
    attrs = _tags(sp.get("tags"))
    if ids.pad_hex(raw_span_id, ids.SPAN_HEX) is None:
        attrs["jaeger.original_span_id"] = str(raw_span_id)
    kind = _KIND_TAG.get(attrs.pop("span.kind", "").lower(), "UNSPECIFIED")
    status_tag = attrs.pop("otel.status_code", "").upper()
    error = attrs.get("error", "").lower() == "true"
    status = "ERROR" if status_tag == "ERROR" or error else ("OK" if status_tag == "OK" else "UNSET")
    process = sp.get("process")
    if not isinstance(process, dict):
        process = processes.get(sp.get("processID"))
    if not isinstance(process, dict):
        raise _Bad("processID", f"process {sp.get('processID')!r} not found in the trace", "bad_field")
    resource = _tags(process.get("tags"))
    if process.get("serviceName") is not None:
        resource[ATTR_SERVICE] = process["serviceName"]
    rows.add(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        links=links,
        name=str(sp.get("operationName") or ""),
        kind=kind,
        start_ns=start * 1000,
        end_ns=(start + duration) * 1000,
        status=status,
        attributes=attrs,
        resource=resource,
    )


def read_document(doc: object, source: str, problems: Problems) -> SpanRows:
    rows = SpanRows(source)
    data = doc.get("data") if isinstance(doc, dict) else None
    traces = [data] if isinstance(data, dict) else data
    if not isinstance(traces, list):
        problems.skip(source, None, "data", "expected a trace object or a list of traces", "malformed_record")
        return rows
    for ti, trace in enumerate(traces):
        if not isinstance(trace, dict) or not isinstance(trace.get("spans"), list):
            problems.skip(source, f"trace {ti}", "spans", "trace without a spans list", "malformed_record")
            continue
        processes = trace.get("processes") or {}
        for si, sp in enumerate(trace["spans"]):
            try:
                if not isinstance(sp, dict):
                    raise _Bad("", "span is not an object", "malformed_record")
                _span(sp, processes, rows, problems)
            except _Bad as e:
                problems.skip(source, f"trace {ti} span {si}", e.field, e.message, e.kind)
    return rows
