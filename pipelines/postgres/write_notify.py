"""write_notify on the `postgres` stack: one INSERT (autocommit) whose BEFORE INSERT trigger
stamps `clock_timestamp()` and issues `pg_notify` on the run's channel; every subscriber (its own
LISTEN session on the primary) is told once the commit is durable on the synchronous replica."""

from __future__ import annotations

from typing import ClassVar

from .pipeline import NotifyPipeline
from .schema import EVENTS, EVENTS_DDL


class WriteNotify(NotifyPipeline):
    workload: ClassVar[str] = "write_notify"
    table: ClassVar[str] = EVENTS
    ddl: ClassVar[list[str]] = EVENTS_DDL
    grants: ClassVar[list[tuple[str, str]]] = [(EVENTS, "SELECT, INSERT")]
    trigger_hop: ClassVar[str | None] = "pg.trigger"
