"""`Edge`: the service-map edge a span stands for, named on the span itself.

The collector build cannot include the servicegraph connector (collector/README.md), which
pairs a client span with its server child to find an edge. So the span that crosses from one
service to another says so: `hopscope.edge.client` and `hopscope.edge.server`. The side a
span's own process is on is left as `SELF` and filled from the tracer's `service.name`; the
other side is a service name (`kafka.notifier`) or a system without spans of its own
(`postgresql`, `kafka`, `redis`, `kafka.connect`). One span per edge names it: the receiving
span where the receiver is instrumented, the calling span where it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace

from hopscope.core.attributes import (
    ATTR_EDGE_CLIENT,
    ATTR_EDGE_SERVER,
    ATTR_EDGE_TYPE,
    ATTR_SERVICE,
    EDGE_DATABASE,
    EDGE_MESSAGING,
)

#: Systems that have no spans of their own: nodes of the map only through the edges naming them.
POSTGRES = "postgresql"
KAFKA = "kafka"
REDIS = "redis"
CONNECT = "kafka.connect"  # Debezium's CDC, seen through the change events it writes
#: This span's own service (`service.name` of its tracer).
SELF = None


@dataclass(frozen=True, slots=True)
class Edge:
    client: str | None = SELF
    server: str | None = SELF
    #: servicegraph's connection_type: "" (request/response), messaging_system, database
    type: str = ""

    def __post_init__(self) -> None:
        if self.client is SELF and self.server is SELF:
            raise ValueError("an edge needs at least one end that is not the span's own service")
        if self.type not in ("", EDGE_MESSAGING, EDGE_DATABASE):
            raise ValueError(f"edge type {self.type!r} is not one of '', {EDGE_MESSAGING}, {EDGE_DATABASE}")

    def attributes(self, own_service: str) -> dict[str, str]:
        attrs = {
            ATTR_EDGE_CLIENT: own_service if self.client is SELF else self.client,
            ATTR_EDGE_SERVER: own_service if self.server is SELF else self.server,
        }
        if self.type:
            attrs[ATTR_EDGE_TYPE] = self.type
        return attrs

    def attributes_for(self, tracer: trace.Tracer) -> dict[str, str]:
        return self.attributes(own_service(tracer))


def messaging_from(client: str) -> Edge:
    """A consumer's edge: messages from `client` (a broker or a service) to this service."""
    return Edge(client=client, type=EDGE_MESSAGING)


def own_service(tracer: trace.Tracer) -> str:
    """`service.name` of the SDK tracer's resource ("unknown_service" for the no-op tracer,
    whose spans are never recorded)."""
    resource = getattr(tracer, "resource", None)
    name = resource.attributes.get(ATTR_SERVICE) if resource is not None else None
    return str(name) if name else "unknown_service"
