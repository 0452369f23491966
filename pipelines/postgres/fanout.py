"""fanout on the `postgres` stack: the same INSERT as write_notify; the trigger routes the row to
the channel of its field values (`<prefix>_<category>_<region>`), and each subscriber LISTENs on
exactly the channels its filter accepts (`notify.subscriber_channels`): a subscriber whose filter
does not match is never on the channel, so it cannot be notified."""

from __future__ import annotations

from typing import ClassVar

from .pipeline import NotifyPipeline
from .schema import EVENTS, EVENTS_DDL


class Fanout(NotifyPipeline):
    workload: ClassVar[str] = "fanout"
    table: ClassVar[str] = EVENTS
    ddl: ClassVar[list[str]] = EVENTS_DDL
    grants: ClassVar[list[tuple[str, str]]] = [(EVENTS, "SELECT, INSERT")]
    trigger_hop: ClassVar[str | None] = "pg.route"
