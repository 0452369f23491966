"""The `hopscope.*` attribute names and span naming rules every component uses.

Part of the floor (`hopscope.core`): every part takes these names from here, so writer and
reader cannot drift; nothing in `hopscope.core` imports another part of hopscope.
OpenTelemetry's semantic-convention constants are used where one exists.
"""

from __future__ import annotations

from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

#: Keys lifted into their own span-table columns (hopscope.core.schema), so left out of `attributes`.
ATTR_STACK = "hopscope.stack"
ATTR_RUN_ID = "hopscope.run_id"
ATTR_WORKLOAD = "hopscope.workload"
ATTR_EVENT_ID = "hopscope.event_id"
ATTR_HOP = "hopscope.hop"
ATTR_DERIVED = "hopscope.derived"
ATTR_SERVICE = SERVICE_NAME


__all__ = [
    "ATTR_DERIVED",
    "ATTR_DERIVED_FROM",
    "ATTR_DERIVED_PRECISION_NS",
    "ATTR_EDGE_CLIENT",
    "ATTR_EDGE_SERVER",
    "ATTR_EDGE_TYPE",
    "ATTR_EVENT_ID",
    "ATTR_HOP",
    "ATTR_RUN_ID",
    "ATTR_SEND_LAG_NS",
    "ATTR_SERVICE",
    "ATTR_SIMULATION",
    "ATTR_STACK",
    "ATTR_SUBSCRIBER",
    "ATTR_WORKLOAD",
    "EDGE_DATABASE",
    "EDGE_MESSAGING",
    "LOADGEN_SPAN_NAME",
    "TRACEPARENT",
    "WAIT_PREFIX",
    "wait_hop",
]

#: On a subscriber's receive span: which subscriber received the event.
ATTR_SUBSCRIBER = "hopscope.subscriber"
#: On a derived span: the embedded field its timestamps came from (e.g. `source.ts_us`).
ATTR_DERIVED_FROM = "hopscope.derived_from"
#: On a derived span: resolution of its timestamps (1_000_000 for LogAppendTime's ms).
ATTR_DERIVED_PRECISION_NS = "hopscope.derived_precision_ns"
#: On the load generator's root span: actual send time minus intended time.
ATTR_SEND_LAG_NS = "hopscope.send_lag_ns"
#: On a span that crosses from one service to another: the two ends of that edge of the
#: service map (service names, or a system without its own spans: `postgresql`, `kafka`,
#: `redis`) and the servicegraph connection type ("" for request/response). The collector
#: counts calls and server-side latency per edge from these (collector/config).
ATTR_EDGE_CLIENT = "hopscope.edge.client"
ATTR_EDGE_SERVER = "hopscope.edge.server"
ATTR_EDGE_TYPE = "hopscope.edge.type"
EDGE_MESSAGING = "messaging_system"
EDGE_DATABASE = "database"
#: Resource/span flag set only by the in-process loopback simulation.
ATTR_SIMULATION = "hopscope.simulation"

#: Name of the load generator's root span (one per event, starts at the intended time).
LOADGEN_SPAN_NAME = "loadgen.send"
#: W3C header / field name of the trace context.
TRACEPARENT = "traceparent"
#: Hop names starting with this prefix are gaps between two spans (queueing, transport).
WAIT_PREFIX = "wait:"


def wait_hop(hop: str) -> str:
    """Name of the gap hop that ends where `hop` starts (`wait:notifier.consume`)."""
    return f"{WAIT_PREFIX}{hop}"
