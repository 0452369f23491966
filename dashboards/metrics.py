"""Names of the series the collector exports to Prometheus, used by every PromQL panel.

They come from the collector's spanmetrics connectors: per hop (namespace
`traces.span.metrics`, unit ms) and per service-map edge (namespace `traces.service.graph`,
seconds, renamed by Prometheus to the servicegraph connector's names), with the hopscope
attributes configured as dimensions. The integration test checks each
name and label here against the real collector's `/metrics`, so a rename there
fails a test instead of leaving an empty panel.
"""

from __future__ import annotations

SPAN_CALLS = "traces_span_metrics_calls_total"
SPAN_DURATION_BUCKET = "traces_span_metrics_duration_milliseconds_bucket"
SPAN_DURATION_SUM = "traces_span_metrics_duration_milliseconds_sum"
SPAN_DURATION_COUNT = "traces_span_metrics_duration_milliseconds_count"

GRAPH_REQUESTS = "traces_service_graph_request_total"
GRAPH_FAILED = "traces_service_graph_request_failed_total"
GRAPH_SERVER_BUCKET = "traces_service_graph_request_server_seconds_bucket"
GRAPH_SERVER_SUM = "traces_service_graph_request_server_seconds_sum"
GRAPH_SERVER_COUNT = "traces_service_graph_request_server_seconds_count"
#: What the collector exports for the edges before Prometheus renames them to the above
#: (deploy/services/prometheus.py, EDGE_RELABEL).
EDGE_SERIES_EXPORTED = ("traces_service_graph_calls_total", "traces_service_graph_duration_seconds_bucket")

# Prometheus label names (OTel attribute names with dots turned into underscores).
STACK = "hopscope_stack"
WORKLOAD = "hopscope_workload"
HOP = "hopscope_hop"
SERVICE = "service_name"
SPAN_NAME = "span_name"
STATUS = "status_code"
STATUS_ERROR = "STATUS_CODE_ERROR"

#: Every series name a dashboard query reads (checked against the real exporter).
ALL_SERIES = (
    SPAN_CALLS,
    SPAN_DURATION_BUCKET,
    SPAN_DURATION_SUM,
    SPAN_DURATION_COUNT,
    GRAPH_REQUESTS,
    GRAPH_SERVER_BUCKET,
)
#: Labels the span-metric series must carry for the dashboard variables to work.
SPAN_LABELS = (STACK, WORKLOAD, HOP, SERVICE, SPAN_NAME, STATUS)
