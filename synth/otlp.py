"""Spans as OTLP JSON lines, as the collector's file exporter writes them."""

from __future__ import annotations

import orjson
import pyarrow as pa

from hopscope.core.attributes import (
    ATTR_DERIVED,
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_RUN_ID,
    ATTR_SERVICE,
    ATTR_STACK,
    ATTR_WORKLOAD,
)

KIND_INT = {"UNSPECIFIED": 0, "INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}


def otlp_lines(table: pa.Table, spans_per_line: int) -> list[bytes]:
    """OTLP JSON `TracesData` lines grouped by resource, as the collector's file exporter writes them."""
    d = table.to_pydict()
    n = table.num_rows
    lines: list[bytes] = []
    for lo in range(0, n, spans_per_line):
        groups: dict[tuple[str, str], list[dict]] = {}
        for i in range(lo, min(n, lo + spans_per_line)):
            attrs = [
                {"key": ATTR_WORKLOAD, "value": {"stringValue": d["workload"][i]}},
                {"key": ATTR_EVENT_ID, "value": {"stringValue": d["event_id"][i]}},
                {"key": ATTR_HOP, "value": {"stringValue": d["hop"][i]}},
            ]
            if d["derived"][i]:
                attrs.append({"key": ATTR_DERIVED, "value": {"boolValue": True}})
            for k, v in d["attributes"][i]:
                attrs.append({"key": k, "value": {"stringValue": v}})
            span = {
                "traceId": d["trace_id"][i],
                "spanId": d["span_id"][i],
                "name": d["name"][i],
                "kind": KIND_INT[d["kind"][i]],
                "startTimeUnixNano": str(d["start_ns"][i]),
                "endTimeUnixNano": str(d["end_ns"][i]),
                "attributes": attrs,
                "status": {},
            }
            if d["parent_span_id"][i]:
                span["parentSpanId"] = d["parent_span_id"][i]
            if d["links"][i]:
                span["links"] = [{"traceId": x["trace_id"], "spanId": x["span_id"]} for x in d["links"][i]]
            groups.setdefault((d["service"][i], d["stack"][i]), []).append(span)
        rs = []
        for (svc, stack), spans in groups.items():
            rs.append(
                {
                    "resource": {
                        "attributes": [
                            {"key": ATTR_SERVICE, "value": {"stringValue": svc}},
                            {"key": ATTR_STACK, "value": {"stringValue": stack}},
                            {
                                "key": ATTR_RUN_ID,
                                "value": {"stringValue": dict(d["resource"][lo])[ATTR_RUN_ID]},
                            },
                        ]
                    },
                    "scopeSpans": [{"scope": {"name": "hopscope.synth"}, "spans": spans}],
                }
            )
        lines.append(orjson.dumps({"resourceSpans": rs}))
    return lines
