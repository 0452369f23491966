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

from hopscope.collector.errors import BadRecord, Problems, short
from hopscope.core import ids
from hopscope.core.attributes import ATTR_SERVICE

from .rows import INT64_MAX, SpanRows, format_double, micros

_KIND_TAG = {
    "client": "CLIENT",
    "server": "SERVER",
    "producer": "PRODUCER",
    "consumer": "CONSUMER",
    "internal": "INTERNAL",
}


def _tag_value(v: object, field: str) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format_double(v)
    if isinstance(v, str | int):
        return str(v)
    raise BadRecord(field, f"tag value is not a string, number or boolean: {short(v)}")


def _tags(tags: object, field: str) -> dict[str, str | None]:
    """Jaeger tags [{key, type, value}] as a map (a later key wins)."""
    if tags is None:
        return {}
    if not isinstance(tags, list):
        raise BadRecord(field, f"is not a list: {short(tags)}")
    out: dict[str, str | None] = {}
    for i, t in enumerate(tags):
        if not isinstance(t, dict) or not isinstance(t.get("key"), str):
            raise BadRecord(f"{field}[{i}]", f"tag without a string key: {short(t)}")
        out[t["key"]] = _tag_value(t.get("value"), f"{field}[{i}].value")
    return out


def _id(raw: object, hex_len: int, field: str, problems: Problems) -> str:
    if raw is None or raw == "":
        raise BadRecord(field, "missing id", "missing_id")
    padded = ids.pad_hex(raw, hex_len)
    if padded is not None:
        return padded
    if not isinstance(raw, str):
        raise BadRecord(field, f"id {short(raw)} is not a string", "bad_id")
    problems.adjust("id_not_hex_hashed")
    return ids.hashed(raw, hex_len, salt="jaeger-label:")


def _text(v: object, field: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRecord(field, f"is not a string: {short(v)}")
    return v


def _span(sp: dict, processes: dict, rows: SpanRows, problems: Problems) -> None:
    trace_id = _id(sp.get("traceID"), ids.TRACE_HEX, "traceID", problems)
    raw_span_id = sp.get("spanID")
    span_id = _id(raw_span_id, ids.SPAN_HEX, "spanID", problems)
    start = micros(sp.get("startTime"), "startTime")
    duration = micros(sp.get("duration"), "duration")
    if (start + duration) * 1000 > INT64_MAX:
        raise BadRecord("duration", "start + duration is past the int64 nanosecond range", "bad_timestamp")
    parent = None
    links: list[tuple[str, str]] = []
    refs = sp.get("references")
    if refs is None:
        refs = []
    if not isinstance(refs, list):
        raise BadRecord("references", f"is not a list: {short(refs)}")
    refs = list(refs)
    parent_raw = sp.get("parentSpanID")
    if parent_raw and not (isinstance(parent_raw, str) and not parent_raw.strip("0")):
        refs.insert(0, {"refType": "CHILD_OF", "traceID": sp.get("traceID"), "spanID": parent_raw})
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise BadRecord(f"references[{i}]", "reference is not an object", "malformed_record")
        rt = _id(ref.get("traceID"), ids.TRACE_HEX, f"references[{i}].traceID", problems)
        rs = _id(ref.get("spanID"), ids.SPAN_HEX, f"references[{i}].spanID", problems)
        ref_type = ref.get("refType", "CHILD_OF")
        if ref_type not in ("CHILD_OF", "FOLLOWS_FROM"):
            raise BadRecord(f"references[{i}].refType", f"unknown refType {short(ref_type)}", "bad_field")
        if ref_type == "CHILD_OF" and parent is None and rt == trace_id:
            parent = rs
        elif (rt, rs) != (trace_id, parent):
            links.append((rt, rs))
    attrs = _tags(sp.get("tags"), "tags")
    if ids.pad_hex(raw_span_id, ids.SPAN_HEX) is None:
        attrs["jaeger.original_span_id"] = str(raw_span_id)
    kind = _KIND_TAG.get((attrs.pop("span.kind", None) or "").lower(), "UNSPECIFIED")
    status_tag = (attrs.pop("otel.status_code", None) or "").upper()
    error = (attrs.get("error") or "").lower() == "true"
    status = "ERROR" if status_tag == "ERROR" or error else ("OK" if status_tag == "OK" else "UNSET")
    process = sp.get("process")
    if process is not None and not isinstance(process, dict):
        raise BadRecord("process", f"is not an object: {short(process)}")
    if process is None:
        pid = sp.get("processID")
        process = processes.get(pid) if isinstance(pid, str) else None
    if not isinstance(process, dict):
        raise BadRecord(
            "processID", f"process {short(sp.get('processID'))} not found in the trace", "bad_field"
        )
    resource: dict[str, str | None] = _tags(process.get("tags"), "process.tags")
    service = process.get("serviceName")
    if service is not None:
        resource[ATTR_SERVICE] = _text(service, "process.serviceName")
    rows.add(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        links=links,
        name=_text(sp.get("operationName"), "operationName"),
        kind=kind,
        start_ns=start * 1000,
        end_ns=(start + duration) * 1000,
        status=status,
        attributes=attrs,
        resource=resource,
    )


def read_document(doc: object, rows: SpanRows, problems: Problems, where: str | None = None) -> None:
    """Add the spans of one `{"data": ...}` document to `rows`; bad traces and spans are counted.

    `where` names the record the document came from (a line of a JSON-lines file), if any.
    """
    source = rows.source
    prefix = f"{where}, " if where else ""
    data = doc.get("data") if isinstance(doc, dict) else None
    traces = [data] if isinstance(data, dict) else data
    if not isinstance(traces, list):
        problems.skip(
            source, where, "data", "expected a trace object or a list of traces", "malformed_record"
        )
        return
    for ti, trace in enumerate(traces):
        if not isinstance(trace, dict) or not isinstance(trace.get("spans"), list):
            problems.skip(
                source, f"{prefix}trace {ti}", "spans", "trace without a spans list", "malformed_record"
            )
            continue
        # a processes map of the wrong type finds no process: each span that needs one is counted
        processes = trace.get("processes")
        processes = processes if isinstance(processes, dict) else {}
        for si, sp in enumerate(trace["spans"]):
            try:
                if not isinstance(sp, dict):
                    raise BadRecord("", f"span is not an object: {short(sp)}", "malformed_record")
                _span(sp, processes, rows, problems)
            except BadRecord as e:
                problems.skip(source, f"{prefix}trace {ti} span {si}", e.field, e.message, e.kind)
            except Exception as e:  # a reader bug: counted, never fatal
                problems.unexpected(source, f"{prefix}trace {ti} span {si}", None, e)
