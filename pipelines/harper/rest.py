"""The confirmed REST write two workloads share (write_notify, aggregate)."""

from __future__ import annotations

import orjson

from ..driver import Ack, Event
from .pipeline import Host


async def put(host: Host, event: Event, resource: str) -> Ack:
    """PUT /<resource>/<event id> on the write node, confirmed by the configured replicas."""
    node = host.client.node(host.config.write_node)
    host.expect(event)
    ack, _ = await host.request(
        "PUT",
        f"{node.rest_url}/{resource}/{event.event_id}",
        content=orjson.dumps(host.body(event)),
        headers=host.write_headers(event),
    )
    return ack
