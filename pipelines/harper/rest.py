"""The confirmed REST write the workloads share (write_notify, fanout, aggregate)."""

from __future__ import annotations

import orjson

from ..driver import Ack, Event
from .pipeline import Host


async def put(host: Host, event: Event, path: str) -> Ack:
    """PUT /<path> on the write node, confirmed by the configured replicas: `path` is a resource
    (the event id is appended) or a record's whole path ending in the event id (fanout)."""
    node = host.client.node(host.config.write_node)
    host.expect(event)
    if not path.endswith(f"/{event.event_id}"):
        path = f"{path}/{event.event_id}"
    ack, _ = await host.request(
        "PUT",
        f"{node.rest_url}/{path}",
        content=orjson.dumps(host.body(event)),
        headers=host.write_headers(event),
    )
    return ack
