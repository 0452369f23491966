"""ingest on the `postgres` stack: events are batched as Postgres ingestion is done — whatever
has arrived while the previous batch was in flight goes into one multi-row INSERT (autocommit:
one statement, one transaction, one synchronous commit). The sink's receipt for every row of a
batch is the moment its commit returned, i.e. durable on the primary and the synchronous replica.
No trigger, no LISTEN session: the committed answer is the receipt (as Harper's ingest)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

import psycopg

from ..driver import Ack, Event
from ..workload import SubscriberSpec
from .pipeline import Pipeline
from .schema import INGEST, INGEST_DDL

#: rows per INSERT at most (a burst larger than this is split over several statements)
MAX_BATCH = 500
#: batches in flight at once (each on its own connection)
MAX_INFLIGHT = 2
SINK = "sink"


class Ingest(Pipeline):
    workload: ClassVar[str] = "ingest"
    table: ClassVar[str] = INGEST
    ddl: ClassVar[list[str]] = INGEST_DDL
    grants: ClassVar[list[tuple[str, str]]] = [(INGEST, "SELECT, INSERT")]
    trigger_hop: ClassVar[str | None] = None

    def __init__(self, host: Any) -> None:
        super().__init__(host)
        self._queue: asyncio.Queue[tuple[Event, str, asyncio.Future[Ack]]] | None = None
        self._workers: list[asyncio.Task[None]] = []

    def channels(self, sub: SubscriberSpec) -> list[str]:
        return []  # the sink is the committed answer, not a LISTEN session

    def send(self, event: Event, traceparent: str) -> asyncio.Future[Ack]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._workers = [asyncio.ensure_future(self._batches()) for _ in range(MAX_INFLIGHT)]
        fut: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, traceparent, fut))
        return fut

    async def _batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[tuple[Event, str, asyncio.Future[Ack]]]) -> None:
        host = self.host
        conn = await host.connection()
        start = host.now_ns()
        values: list[Any] = []
        for event, traceparent, _fut in batch:
            values += [host.run.run_id, event.event_id, event.key, traceparent,
                       event.payload.decode("ascii", "replace"), start]  # fmt: skip
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(batch))
        try:
            await conn.execute(
                f"INSERT INTO {INGEST} (run_id, event_id, key, traceparent, payload, sent_ns) VALUES {rows}",
                values,
            )
            ack = Ack("ok", host.now_ns())
        except psycopg.Error as exc:
            ack = Ack("error", host.now_ns(), f"INSERT of {len(batch)} rows failed: {exc}")
        finally:
            host.release(conn)
        for event, traceparent, fut in batch:
            host.stored(event, traceparent, start, ack, SINK)
            if not fut.done():
                fut.set_result(ack)

    async def aclose(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._workers = []
