"""ingest on the Harper stack: REST POST /Ingest/ on node 1, confirmed by a replica; the confirmed
write's answer is the sink's receipt (no subscriber)."""

from __future__ import annotations

from typing import ClassVar

import orjson

from ..driver import Ack, Event
from . import topics
from .pipeline import Pipeline


class Ingest(Pipeline):
    workload: ClassVar[str] = "ingest"

    async def send(self, event: Event) -> Ack:
        host = self.host
        node = host.client.node(host.config.write_node)
        ack, resp = await host.request(
            "POST",
            f"{node.rest_url}/{topics.INGEST}/",
            content=orjson.dumps({"id": event.event_id, **host.body(event)}),
            headers=host.write_headers(event),
        )
        if ack.status == "ok":
            acked = ack.acked_ns or host.run.now_ns()
            # the component names its last hop (the confirmation) in a W3C traceresponse header
            parent = (resp.headers.get("traceresponse") if resp is not None else None) or event.traceparent
            for sub in event.expected_subscribers:  # the confirmed, replicated write is the receipt
                host.record_sink(event, sub, acked, parent)
        return ack
