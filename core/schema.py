"""The one flat span table every reader produces and the analysis consumes.

One row per span. Ids are lower-case hex (trace 32 chars, span 16 chars) whatever
the source wrote (upper-case hex, base64, Zipkin's 16-char trace ids are
left-padded with zeros). Times are Unix nanoseconds.
"""

from __future__ import annotations

import pyarrow as pa

LINK_TYPE = pa.struct([("trace_id", pa.string()), ("span_id", pa.string())])

#: Span kinds as OTLP names them, without the SPAN_KIND_ prefix.
KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUSES = ("UNSET", "OK", "ERROR")

SPAN_SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("parent_span_id", pa.string()),  # null on roots
        ("links", pa.list_(LINK_TYPE)),
        ("name", pa.string()),
        ("kind", pa.string()),  # one of KINDS
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("status", pa.string()),  # one of STATUSES
        ("service", pa.string()),  # resource service.name
        ("stack", pa.string()),  # resource hopscope.stack
        ("workload", pa.string()),  # span (or resource) hopscope.workload
        ("event_id", pa.string()),  # hopscope.event_id
        ("hop", pa.string()),  # hopscope.hop
        ("derived", pa.bool_()),  # hopscope.derived (false when absent)
        ("attributes", pa.map_(pa.string(), pa.string())),  # remaining span attributes
        ("resource", pa.map_(pa.string(), pa.string())),  # remaining resource attributes
        ("source", pa.string()),  # file (or URL) the span was read from
    ]
)

#: how spans.parquet is written (ingest, synth, the benchmarks): zstd; dictionary pages for the
#: low-cardinality columns (attribute keys and values too) and for the trace and event ids, which
#: every span of a trace repeats
#: (the analysis reads those as dictionaries: each distinct id decoded and parsed once). Span
#: ids are unique, so no dictionary for them: the writer would build one only to give it up. The
#: page limit lets a row group's dictionary hold every trace id in it (1 M spans of 1-span
#: traces: 32 MiB) instead of falling back to plain pages part way.
SPAN_PARQUET_OPTIONS: dict = {
    "compression": "zstd",
    "dictionary_pagesize_limit": 64 << 20,
    "use_dictionary": [
        "trace_id",
        "event_id",
        "name",
        "kind",
        "status",
        "service",
        "stack",
        "workload",
        "hop",
        "derived",
        # nested columns are named by their leaves (a map's name alone leaves them plain)
        "attributes.key_value.key",
        "attributes.key_value.value",
        "resource.key_value.key",
        "resource.key_value.value",
        "links.list.element.trace_id",
        "source",
    ],
}
