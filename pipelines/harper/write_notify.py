"""write_notify on the Harper stack: REST PUT /Notify/<id> on node 1 (`X-Replicate-To: *;confirm=1`);
every subscriber gets the change over MQTT `Notify/#` (sub-i on node i+1)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import ClassVar

from ..driver import Ack, Event
from ..workload import Workload
from . import topics
from .pipeline import Pipeline, Sub, fanned_subscribers
from .rest import put


class WriteNotify(Pipeline):
    workload: ClassVar[str] = "write_notify"

    def subscribers(self, workload: Workload) -> list[Sub]:
        return fanned_subscribers(workload, len(self.host.client.nodes), lambda _spec: [f"{topics.NOTIFY}/#"])

    def send(self, event: Event) -> Awaitable[Ack]:
        return put(self.host, event, topics.NOTIFY)
