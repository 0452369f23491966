"""One workload on the `postgres` stack, behind `PostgresDriver` (one module per workload).

The driver owns the connections, the LISTEN sessions, receipts, the spans and the manifest; a
`Pipeline` says which table and trigger its workload writes, which channels each subscriber
LISTENs on, and how one event is sent. `NotifyPipeline` is the shape three workloads share:
one INSERT in autocommit (its own transaction) whose trigger stamps the row and issues
`pg_notify`; the commit waits for the synchronous replica, then the notification is delivered.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Protocol

import orjson
import psycopg

from ..driver import Ack, Event, RunContext
from ..workload import SubscriberSpec, Workload
from .notify import field_order, subscriber_channels


class Host(Protocol):
    """What a pipeline uses of `PostgresDriver`."""

    run: RunContext
    workload: Workload
    prefix: str

    async def connection(self) -> Any: ...
    def release(self, conn: Any) -> None: ...
    def sent(self, event: Event, traceparent: str, sent_ns: int, ack: Ack) -> Ack: ...
    def now_ns(self) -> int: ...
    def stored(self, event: Event, traceparent: str, start_ns: int, ack: Ack, sink: str) -> None: ...
    def point_read(self, event: Event, traceparent: str, start_ns: int, end_ns: int) -> None: ...


class Pipeline:
    workload: ClassVar[str]
    #: the table the run's rows go to (its commit times are read after the run)
    table: ClassVar[str]
    ddl: ClassVar[list[str]]
    #: (table, privileges) the pipeline role needs
    grants: ClassVar[list[tuple[str, str]]] = []
    #: the hop the trigger's clock_timestamp() ends (None: no trigger)
    trigger_hop: ClassVar[str | None] = "pg.trigger"
    receive_hop: ClassVar[str] = "subscriber.receive"
    receiver_service: ClassVar[str] = "postgres.subscriber"

    def __init__(self, host: Host) -> None:
        self.host = host

    def channels(self, sub: SubscriberSpec) -> list[str]:
        """The channels `sub` LISTENs on (none: the workload has no LISTEN sessions)."""
        return subscriber_channels(self.host.prefix, self.host.workload, sub)

    def send(self, event: Event, traceparent: str) -> asyncio.Future[Ack]:
        return asyncio.ensure_future(self._insert(event, traceparent))

    def row(self, event: Event, traceparent: str, sent_ns: int) -> tuple[str, tuple[Any, ...]]:
        raise NotImplementedError

    async def _insert(self, event: Event, traceparent: str) -> Ack:
        host = self.host
        conn = await host.connection()
        sent = host.now_ns()
        try:
            query, params = self.row(event, traceparent, sent)
            await conn.execute(query, params)
            ack = Ack("ok", host.now_ns())
        except psycopg.Error as exc:
            ack = Ack("error", host.now_ns(), f"INSERT failed: {exc}")
        finally:
            host.release(conn)
        return host.sent(event, traceparent, sent, ack)

    async def aclose(self) -> None:
        """Stop what the pipeline runs itself (the ingest batcher)."""


class NotifyPipeline(Pipeline):
    """write_notify and fanout: a row in `hopscope_pg_events`, routed by the trigger."""

    def row(self, event: Event, traceparent: str, sent_ns: int) -> tuple[str, tuple[Any, ...]]:
        from .schema import EVENTS

        host = self.host
        return (
            f"INSERT INTO {EVENTS} (run_id, event_id, key, fields, chan, route, traceparent, payload, sent_ns) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                host.run.run_id,
                event.event_id,
                event.key,
                orjson.dumps(event.fields).decode(),
                host.prefix,
                field_order(host.workload),
                traceparent,
                event.payload.decode("ascii", "replace"),
                sent_ns,
            ),
        )
