"""`PostgresDriver`: the `postgres` stack — PostgreSQL alone, its triggers and LISTEN/NOTIFY.

| workload | what `send` does | who reports the receipt | module |
|---|---|---|---|
| write_notify | INSERT; the trigger stamps the row and NOTIFYs the run's channel | LISTEN sessions (threads here) | `write_notify.py` |
| fanout | the same INSERT; the trigger routes to the channel of the row's field values | LISTEN sessions on the channels their filter accepts | `fanout.py` |
| aggregate | INSERT of a reading; the trigger upserts the key's aggregate and NOTIFYs its new state; point reads: SELECT by primary key | the reader's LISTEN session | `aggregate.py` |
| ingest | batched multi-row INSERT | the committed answer (the sink) | `ingest.py` |

Everything runs against the `pgsync` service (deploy/services/pgsync.py): a primary with one
synchronous streaming replica, `synchronous_commit = on` (D23). The driver owns the connections,
the LISTEN sessions, receipts, the spans (built after the run, `spans.py`), the clean start and
the manifest; each workload's own steps are its `Pipeline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import psycopg

from hopscope.core.attributes import EDGE_DATABASE
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.services.pgsync import SYNC_STANDBY_NAMES, PgSync
from hopscope.instrumentation.edges import POSTGRES, Edge
from hopscope.instrumentation.tracing import ENDPOINT_ENV, setup_tracing, shutdown_tracing

from ..driver import Ack, Driver, Event, PreflightError, RunContext
from ..workload import POINT_READ, Workload
from .aggregate import Aggregate
from .fanout import Fanout
from .ingest import Ingest
from .listener import Listener
from .notify import LimitError, Notification, channel_prefix, check_limits
from .pipeline import Pipeline
from .spans import SpanRecords, build_spans
from .write_notify import WriteNotify

PIPELINES: dict[str, type[Pipeline]] = {p.workload: p for p in (WriteNotify, Fanout, Aggregate, Ingest)}
#: connections the bench's writes and point reads share
POOL_SIZE = 4
#: every session of a run is named `hopscope-pg-<tag>-…` (how the clean start finds strays)
APP_PREFIX = "hopscope-pg-"
LISTEN_READY_TIMEOUT_S = 15.0


def run_tag(run_id: str) -> str:
    """A channel-safe short tag of a run id."""
    cleaned = "".join(c if c.isalnum() else "_" for c in run_id.lower())
    return cleaned[-24:].strip("_") or "run"


class PostgresDriver(Driver):
    stack: ClassVar[str] = "postgres"

    def __init__(
        self,
        config_path: Path | None = None,
        otlp_endpoint: str | None = None,
        tracing: bool = True,
        check_collector: bool = True,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.ctx = Context(load_config(config_path))
        self.service = PgSync(self.ctx)
        self.otlp_endpoint = (
            otlp_endpoint
            or next((os.environ[n] for n in ENDPOINT_ENV if os.environ.get(n)), None)
            or self.ctx.config.collector.otlp_grpc_endpoint
        )
        self.tracing = tracing
        self.check_collector = check_collector
        self.pool_size = pool_size
        self.facts: dict[str, Any] = {}
        self.pipeline: Pipeline | None = None
        self._listeners: list[Listener] = []
        self._free: asyncio.Queue[Any] | None = None
        self._conns: list[Any] = []
        self._expected = 0
        self._received = 0
        self._idle: asyncio.Event | None = None
        self.records = SpanRecords()

    def root_edge(self, workload: str) -> Edge | None:
        # the load generator's client talks to Postgres for every workload and the point reads
        return Edge(server=POSTGRES, type=EDGE_DATABASE)

    def now_ns(self) -> int:
        return self.run.now_ns()

    # --- preflight ----------------------------------------------------------------------

    def _pipeline_for(self, workload: Workload) -> Pipeline:
        if workload.name not in PIPELINES:
            raise PreflightError(
                self.stack, "driver", f"workload {workload.name!r} is not one of {list(PIPELINES)}"
            )
        if self.pipeline is None or self.pipeline.workload != workload.name:
            self.pipeline = PIPELINES[workload.name](self)
        return self.pipeline

    def preflight(self, workload: Workload) -> None:
        self._pipeline_for(workload)
        where = f"127.0.0.1:{self.ctx.config.pgsync.primary_port}"
        try:
            # the longest prefix a run can have: the limits hold for every run
            check_limits(workload, channel_prefix("x" * 24, workload.name))
        except LimitError as exc:
            raise PreflightError("pgsync", where, f"LISTEN/NOTIFY limit: {exc}") from exc
        try:
            facts = self.service.fairness()
        except psycopg.Error as exc:
            raise PreflightError(
                "pgsync", where, f"connect failed: {exc} (`hopscope up --only postgres-stack`)"
            ) from exc
        settings = facts["postgres"]
        if settings["synchronous_commit"] != "on":
            raise PreflightError(
                "pgsync",
                where,
                f"synchronous_commit is {settings['synchronous_commit']!r}; the stack needs 'on'",
            )
        if settings["synchronous_standby_names"] != SYNC_STANDBY_NAMES:
            raise PreflightError(
                "pgsync", where,
                f"synchronous_standby_names is {settings['synchronous_standby_names']!r}, not {SYNC_STANDBY_NAMES!r}",
            )  # fmt: skip
        if not any(r["sync_state"] == "sync" and r["state"] == "streaming" for r in facts["replicas"]):
            raise PreflightError("pgsync", where, f"no streaming synchronous replica: {facts['replicas']}")
        self.facts.update(facts)
        if self.tracing and self.check_collector:
            url = urlparse(self.otlp_endpoint if "//" in self.otlp_endpoint else f"//{self.otlp_endpoint}")
            import socket

            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex((url.hostname or "127.0.0.1", url.port or 4317)) != 0:
                    raise PreflightError(
                        "collector", self.otlp_endpoint,
                        "OTLP endpoint not reachable; spans would be lost (`hopscope up --only collector`, or --no-tracing)",
                    )  # fmt: skip

    # --- setup --------------------------------------------------------------------------

    async def setup(self, workload: Workload, run: RunContext) -> None:
        pipeline = self._pipeline_for(workload)
        self.workload = workload
        self.run = run
        self.loop = asyncio.get_running_loop()
        self.tag = run_tag(run.run_id)
        self.prefix = channel_prefix(self.tag, workload.name)
        self.records = SpanRecords()
        self._expected = self._received = 0
        self._idle = asyncio.Event()
        self._idle.set()
        try:
            await asyncio.to_thread(self._setup_sync, pipeline)
            self._free = asyncio.Queue()
            for i in range(self.pool_size):
                conn = await psycopg.AsyncConnection.connect(
                    self.service.pipeline_dsn(), autocommit=True, application_name=self._app(f"writer{i}")
                )
                self._conns.append(conn)
                self._free.put_nowait(conn)
        except BaseException:
            await self.teardown()
            raise

    def _app(self, role: str) -> str:
        return f"{APP_PREFIX}{self.tag}-{role}"[:63]

    def _setup_sync(self, pipeline: Pipeline) -> None:
        with psycopg.connect(self.service.dsn(), autocommit=True) as conn:
            # one run at a time creates the shared functions (CREATE OR REPLACE races otherwise)
            conn.execute("SELECT pg_advisory_lock(724001)")
            try:
                for statement in pipeline.ddl:
                    conn.execute(statement)
                for table, privileges in pipeline.grants:
                    self.service.grant_pipeline(conn, table, privileges)
            finally:
                conn.execute("SELECT pg_advisory_unlock(724001)")
        for sub in self.workload.subscribers:
            channels = pipeline.channels(sub)
            if not channels:
                continue
            listener = Listener(
                sub.name, self.service.pipeline_dsn(), channels, self._on_notification,
                self.run.now_ns, self._app(f"listen-{sub.name}"),
            )  # fmt: skip
            listener.start()
            self._listeners.append(listener)
        for listener in self._listeners:
            if not listener.ready.wait(LISTEN_READY_TIMEOUT_S) or listener.errors:
                raise PreflightError(
                    "pgsync", "LISTEN", f"subscriber {listener.sub_name} could not listen: {listener.errors}"
                )
        self.facts["listen_sessions"] = {lst.sub_name: lst.channels for lst in self._listeners}
        # the durability settings as the primary reports them once the run's sessions exist
        self.facts.update(self.service.fairness())

    # --- connections (pipelines) -----------------------------------------------------------

    async def connection(self) -> Any:
        assert self._free is not None
        return await self._free.get()

    def release(self, conn: Any) -> None:
        assert self._free is not None
        self._free.put_nowait(conn)

    # --- clean start --------------------------------------------------------------------

    async def backlog(self) -> dict[str, float]:
        return await asyncio.to_thread(self._backlog_sync)

    def _backlog_sync(self) -> dict[str, float]:
        with psycopg.connect(self.service.dsn(), autocommit=True) as conn:
            usage = conn.execute("SELECT pg_notification_queue_usage()").fetchone()[0]
            lag = conn.execute(
                "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0) "
                "FROM pg_stat_replication WHERE sync_state = 'sync'"
            ).fetchone()[0]
            sync = conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
            ).fetchone()[0]
            strays = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
                "AND application_name NOT LIKE %s",
                (f"{APP_PREFIX}%", f"{APP_PREFIX}{self.tag}-%"),
            ).fetchone()[0]
        return {
            # a listener of an earlier run that stopped reading holds the queue's tail
            "notification queue used (fraction)": float(usage),
            # WAL of an earlier run the replica has not replayed yet (its disk and CPU are busy)
            "replica replay lag (bytes)": float(lag),
            "synchronous replicas missing": float(sync == 0),
            "stray sessions of earlier runs": float(strays),
        }

    # --- receipts -----------------------------------------------------------------------

    def _on_notification(self, subscriber: str, note: Notification, received: int, handled: int) -> None:
        self.records.receipt(note.event_id, subscriber, note.traceparent, received, handled)
        self.loop.call_soon_threadsafe(self._on_receipt, note.event_id, subscriber, received)

    def _on_receipt(self, event_id: str, subscriber: str, received_ns: int) -> None:
        self.run.receipt(event_id, subscriber, received_ns)
        self._received += 1
        if self._received >= self._expected and self._idle is not None:
            self._idle.set()

    def sent(self, event: Event, traceparent: str, sent_ns: int, ack: Ack) -> Ack:
        """A write's answer (pipelines call it): kept for its derived spans."""
        if ack.status == "ok":
            self.records.write(event.event_id, traceparent, sent_ns, ack.acked_ns or self.now_ns())
        return ack

    def stored(self, event: Event, traceparent: str, start_ns: int, ack: Ack, sink: str) -> None:
        """An ingested row's batch answered: the sink's receipt once committed (and its span)."""
        if ack.status != "ok":
            return
        end = ack.acked_ns or self.now_ns()
        self.records.sink(event.event_id, sink, traceparent, start_ns, end)
        self._on_receipt(event.event_id, sink, end)

    def point_read(self, event: Event, traceparent: str, start_ns: int, end_ns: int) -> None:
        self.records.point_read(event.event_id, traceparent, start_ns, end_ns)

    # --- send, drain, teardown ---------------------------------------------------------------

    def send(self, event: Event) -> asyncio.Future[Ack]:
        if event.workload != POINT_READ:
            self._expected += len(event.expected_subscribers)
            if self._received < self._expected and self._idle is not None:
                self._idle.clear()
        traceparent = event.traceparent or f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"
        assert self.pipeline is not None
        return self.pipeline.send(event, traceparent)

    async def drain(self, timeout_s: float) -> None:
        assert self._idle is not None
        if self._received >= self._expected:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def teardown(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.aclose()
        for listener in self._listeners:
            listener.close()
        await asyncio.to_thread(self._join_listeners)
        for conn in self._conns:
            with contextlib.suppress(Exception):
                await conn.close()
        self._conns = []
        self._free = None
        if self.pipeline is not None and getattr(self, "run", None) is not None:
            await asyncio.to_thread(self._spans)

    def _join_listeners(self) -> None:
        for listener in self._listeners:
            listener.join(5)
        self.facts["receiver_errors"] = [e for lst in self._listeners for e in lst.errors][:50]
        self.facts["notifications_received"] = {lst.sub_name: lst.received for lst in self._listeners}
        self._listeners = []

    def _spans(self) -> None:
        """The run's spans, built from what was recorded and the commit times Postgres kept."""
        assert self.pipeline is not None
        if not self.tracing:
            return
        commits: dict[str, tuple[int | None, int | None]] = {}
        if self.pipeline.trigger_hop is not None:
            from .schema import commit_times_sql

            with psycopg.connect(self.service.dsn(), autocommit=True) as conn:
                for event_id, trig_us, commit_us in conn.execute(
                    commit_times_sql(self.pipeline.table), (self.run.run_id,)
                ):
                    commits[event_id] = (trig_us, commit_us)
        providers = {
            name: setup_tracing(name, self.stack, self.run.run_id, endpoint=self.otlp_endpoint)
            for name in ("postgres.client", self.pipeline.receiver_service)
        }
        try:
            self.facts["spans"] = build_spans(
                self.records,
                commits,
                client=providers["postgres.client"].get_tracer("hopscope.pipelines.postgres"),
                receiver=providers[self.pipeline.receiver_service].get_tracer("hopscope.pipelines.postgres"),
                workload=self.workload.name,
                trigger_hop=self.pipeline.trigger_hop,
                receive_hop=self.pipeline.receive_hop,
            )
        finally:
            for provider in providers.values():
                shutdown_tracing(provider)

    # --- manifest -----------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "simulation": False,
            "tracing": self.tracing,
            "otlp_endpoint": self.otlp_endpoint,
            "receipts_expected": self._expected,
            "receipts_received": self._received,
            "pool_size": self.pool_size,
            **self.facts,
        }
