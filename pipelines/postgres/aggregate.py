"""aggregate on the `postgres` stack: one INSERT of the reading (autocommit); its trigger upserts
the key's running aggregate in the same transaction and notifies the new state on the run's
channel; the dashboard reader LISTENs on it. Point reads SELECT the aggregate by primary key on
the primary (a read of committed state; the replica would answer the same under
`synchronous_commit = on` only after replay, D23)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import psycopg

from ..driver import Ack, Event
from ..workload import POINT_READ
from .pipeline import Pipeline
from .schema import AGGREGATE_DDL, AGGREGATES, READINGS


class Aggregate(Pipeline):
    workload: ClassVar[str] = "aggregate"
    table: ClassVar[str] = READINGS
    ddl: ClassVar[list[str]] = AGGREGATE_DDL
    grants: ClassVar[list[tuple[str, str]]] = [
        (READINGS, "SELECT, INSERT"),
        (AGGREGATES, "SELECT, INSERT, UPDATE"),  # the trigger runs as the inserting role
    ]
    trigger_hop: ClassVar[str | None] = "pg.aggregate"
    receive_hop: ClassVar[str] = "reader.receive"
    receiver_service: ClassVar[str] = "postgres.reader"

    def send(self, event: Event, traceparent: str) -> asyncio.Future[Ack]:
        if event.workload == POINT_READ:
            return asyncio.ensure_future(self._point_read(event, traceparent))
        return super().send(event, traceparent)

    def row(self, event: Event, traceparent: str, sent_ns: int) -> tuple[str, tuple[Any, ...]]:
        host = self.host
        return (
            f"INSERT INTO {READINGS} (run_id, event_id, key, value, chan, traceparent, payload, sent_ns) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                host.run.run_id,
                event.event_id,
                event.key,
                float(event.seq % 100),
                host.prefix,
                traceparent,
                event.payload.decode("ascii", "replace"),
                sent_ns,
            ),
        )

    async def _point_read(self, event: Event, traceparent: str) -> Ack:
        host = self.host
        conn = await host.connection()
        start = host.now_ns()
        try:
            cur = await conn.execute(f"SELECT count, total FROM {AGGREGATES} WHERE key = %s", (event.key,))
            found = await cur.fetchone()
            end = host.now_ns()
            # a key not aggregated yet is an answer, not a failure of the read path
            ack = Ack("ok", end, None if found else "no aggregate yet")
        except psycopg.Error as exc:
            end = host.now_ns()
            ack = Ack("error", end, f"SELECT failed: {exc}")
        finally:
            host.release(conn)
        host.point_read(event, traceparent, start, end)
        return ack
