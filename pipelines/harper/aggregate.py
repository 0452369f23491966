"""aggregate on the Harper stack: REST PUT /Reading/<id> (the component updates Aggregate/<key> in
the same transaction), confirmed; the reader subscribes to `Aggregate/#` on node 2; point reads
GET /Aggregate/<key> on node 2."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar

from ..driver import Ack, Event
from ..workload import POINT_READ, Workload
from . import topics
from .pipeline import READER_HOP, Pipeline, Sub
from .rest import put


class Aggregate(Pipeline):
    workload: ClassVar[str] = "aggregate"

    def subscribers(self, workload: Workload) -> list[Sub]:
        node = self.host.config.read_node
        return [Sub(s.name, node, [f"{topics.AGGREGATE}/#"], READER_HOP) for s in workload.subscribers]

    def send(self, event: Event) -> Awaitable[Ack]:
        if event.workload == POINT_READ:
            return self._point_read(event)
        return put(self.host, event, topics.READING)

    async def _point_read(self, event: Event) -> Ack:
        host = self.host
        node = host.client.node(host.config.read_node)
        headers = {**event.carrier, "x-hopscope-run": host.run.run_id, "x-hopscope-event": event.event_id}
        ack, resp = await host.request(
            "GET", f"{node.rest_url}/{topics.AGGREGATE}/{event.key}", headers=headers
        )
        if resp is not None and resp.status_code == 404:
            # a key not aggregated yet is an answer, not a failure of the read path
            return Ack("ok", ack.acked_ns, "404: no aggregate yet")
        return ack

    def deliveries(self, sub: Sub, record: dict[str, Any]) -> list[tuple[Any, Any]]:
        # an aggregate state covers every event folded in since the reader's last one
        items = [i for i in record.get("recent") or [] if isinstance(i, dict)]
        # the key's row outlives runs: its recent list may still name earlier runs' events
        own = f"{self.host.run.run_id}-"
        items = [i for i in items if str(i.get("eventId", "")).startswith(own)]
        return [(i.get("eventId"), i.get("traceparent")) for i in items]

    def seen_before(self, sub: Sub, event_id: str) -> bool:
        if event_id in sub.seen:
            sub.already_seen += 1  # the same event again in a later aggregate state
            return True
        sub.seen.add(event_id)
        return False
