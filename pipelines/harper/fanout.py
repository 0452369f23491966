"""fanout on the Harper stack: REST PUT /Fanout/<region>/<category>/<id> on node 1, confirmed by a
replica (`X-Replicate-To: *;confirm=1`); subscribers hold MQTT topic filters over those records
and sit on the replicas, so each hears of an event once a second node holds it (D21)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import ClassVar

from ..driver import Ack, Event
from ..workload import Workload
from . import topics
from .pipeline import Pipeline, Sub, fanned_subscribers
from .rest import put


class Fanout(Pipeline):
    workload: ClassVar[str] = "fanout"

    _workload: Workload | None = None

    def subscribers(self, workload: Workload) -> list[Sub]:
        return fanned_subscribers(
            workload, len(self.host.client.nodes), lambda spec: topics.fanout_filters(workload, spec)
        )

    async def setup(self, workload: Workload) -> None:
        self._workload = workload

    def send(self, event: Event) -> Awaitable[Ack]:
        assert self._workload is not None
        return put(self.host, event, topics.fanout_topic(self._workload, event.fields, event.event_id))
