"""write_notify on the Kafka stack: INSERT (autocommit, `synchronous_commit=on`) with a
`traceparent` column → Debezium (Connect) → Kafka → the notifier (glue process) → a Redis
channel → the subscribers (threads in the bench process)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

import httpx
import orjson
import psycopg
from confluent_kafka import Consumer, TopicPartition

from hopscope.deploy.base import wait_until
from hopscope.deploy.services.kafka import debezium_postgres_config
from hopscope.instrumentation.hops import LeafSpans
from hopscope.instrumentation.libraries import trace_client, within_traceparent

from ..driver import Ack, Event, PreflightError
from .common import TOPIC_CONFIGS, consumer_config, now_ns
from .pipeline import Pipeline

WN_TABLE = "hopscope_wn_events"
WN_CONNECTOR = "hopscope-write-notify"
WN_PREFIX = "hopscope_wn"
WN_SLOT = "hopscope_wn_slot"
WN_TOPIC = f"{WN_PREFIX}.public.{WN_TABLE}"
#: Postgres connections the bench's INSERTs share
PG_POOL = 4


class WriteNotify(Pipeline):
    workload: ClassVar[str] = "write_notify"
    produces_events: ClassVar[bool] = False

    _pg_free: asyncio.Queue[Any] | None = None
    _tail: Any = None  # the consumer that reads the CDC topic's newest record (backlog)

    def preflight(self) -> None:
        connect = self.host.connect()
        url = connect.endpoint()
        try:
            plugins = connect.rest_get("/connector-plugins", timeout=5)
            plugins.raise_for_status()
        except httpx.HTTPError as exc:
            raise PreflightError("connect", url, f"REST API not answering: {exc}") from exc
        if not any("PostgresConnector" in p.get("class", "") for p in plugins.json()):
            raise PreflightError("connect", url, "the Debezium Postgres connector is not installed")

    def setup(self) -> None:
        host = self.host
        redis_url = host.redis_url()
        prefix = f"hopscope:{host.tag}:"
        self._setup_cdc()
        host.spawn("notifier", topic=WN_TOPIC, redis_url=redis_url, channel_prefix=prefix)
        spans = LeafSpans(host.provider("kafka.subscriber"), "hopscope.pipelines.kafka")
        for sub in host.workload.subscriber_names:
            host.subscriber(sub, redis_url, f"{prefix}notify", spans)

    def _setup_cdc(self) -> None:
        host = self.host
        dsn = host.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {WN_TABLE} (id bigserial PRIMARY KEY, run_id text NOT NULL, "
                "event_id text NOT NULL, key text NOT NULL, traceparent text NOT NULL, payload text NOT NULL, "
                "sent_ns bigint NOT NULL)"
            )
            host.grant_pipeline(conn, WN_TABLE)
        # One connector and slot for every run (a slot per run would leave WAL pinned); the
        # notifier starts at the topic's end, so it never sees an earlier run's rows.
        host.kafka.ensure_topic(WN_TOPIC, 1, rf=3, configs=TOPIC_CONFIGS)
        connect = host.connect()
        tables, publication = [f"public.{WN_TABLE}"], "hopscope_wn_pub"
        config = debezium_postgres_config(
            # Debezium's own replication role (SELECT on this table only), not the superuser
            connect.cdc_dsn(tables, publication),
            tables=tables,
            topic_prefix=WN_PREFIX,
            slot_name=WN_SLOT,
            publication_name=publication,
            secret=connect.secret_ref,
            # poll interval, batch and producer overrides from the run's KafkaTuning
            **host.tuning.debezium_settings(),
        )
        if connect.put_connector_config(WN_CONNECTOR, config) != "created":
            connect.revive_connector(WN_CONNECTOR)
        connect.wait_connector_running(WN_CONNECTOR)
        with psycopg.connect(dsn, autocommit=True) as conn:

            def slot_active() -> None:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (WN_SLOT,)
                ).fetchone()
                if not row or not row[0]:
                    raise RuntimeError(f"replication slot {WN_SLOT} is not streaming")

            wait_until(slot_active, timeout=60, interval=0.2)

    def send(self, event: Event, traceparent: str) -> asyncio.Future[Ack]:
        return asyncio.ensure_future(self._insert(event, traceparent))

    async def _insert(self, event: Event, traceparent: str) -> Ack:
        host = self.host
        if self._pg_free is None:
            self._pg_free = asyncio.Queue()
            for _ in range(PG_POOL):
                conn = await psycopg.AsyncConnection.connect(host.pipeline_dsn(), autocommit=True)
                self._pg_free.put_nowait(trace_client(conn, host.client_provider()))
        conn = await self._pg_free.get()
        try:
            sent = now_ns()
            body = host.payload_of(event, sent).encode().decode()
            with within_traceparent(traceparent, host.tracing):  # the INSERT's span joins the event's trace
                await conn.execute(
                    f"INSERT INTO {WN_TABLE} (run_id, event_id, key, traceparent, payload, sent_ns) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (host.run.run_id, event.event_id, event.key, traceparent, body, sent),
                )
            return Ack("ok", now_ns())
        except psycopg.Error as exc:
            return Ack("error", now_ns(), f"INSERT failed: {exc}")
        finally:
            self._pg_free.put_nowait(conn)

    def topics(self) -> list[str]:
        return [WN_TOPIC]

    def backlog(self) -> dict[str, float]:
        """Rows an earlier run committed that Debezium has not put on the topic yet: the slot is
        shared by every run, so an overloaded run's rows come out ahead of this run's."""
        with psycopg.connect(self.host.dsn(), autocommit=True) as conn:
            newest = conn.execute(f"SELECT max(id) FROM {WN_TABLE}").fetchone()[0]
        captured = self._last_captured_id()
        if newest is None or captured is None:
            return {"CDC rows not yet on Kafka": 0.0}  # an empty table or topic: nothing queued
        return {"CDC rows not yet on Kafka": float(max(0, newest - captured))}

    def _last_captured_id(self) -> int | None:
        """The row id of the newest change event on the CDC topic (None: the topic is empty)."""
        if self._tail is None:
            self._tail = Consumer(
                consumer_config(
                    self.host.kafka.bootstrap(), f"hopscope-wn-tail-{self.host.tag}", self.host.tuning
                )
                | {"enable.auto.commit": False}
            )
        part = TopicPartition(WN_TOPIC, 0)
        _low, high = self._tail.get_watermark_offsets(part, timeout=10)
        if high <= 0:
            return None
        self._tail.assign([TopicPartition(WN_TOPIC, 0, high - 1)])
        msg = self._tail.poll(10)
        if msg is None or msg.error() is not None or msg.value() is None:
            return None
        row = (orjson.loads(msg.value()) or {}).get("after") or {}
        return int(row["id"]) if isinstance(row.get("id"), int) else None

    def read_back(self) -> dict[str, Any]:
        config = self.host.connect().rest_get(f"/connectors/{WN_CONNECTOR}/config", timeout=5).json()
        return {
            "debezium": {
                k: v
                for k, v in config.items()
                if k in ("poll.interval.ms", "max.batch.size", "plugin.name", "snapshot.mode")
                or k.startswith("producer.override.")
            }
        }

    def stop(self) -> None:
        if self._tail is not None:
            self._tail.close()
            self._tail = None

    def after_stop(self) -> None:
        with contextlib.suppress(Exception):
            # Idle with a poll.interval.ms of 1 the task costs a good part of a core.
            self.host.connect().pause_connector(WN_CONNECTOR)

    async def aclose(self) -> None:
        if self._pg_free is not None:
            while not self._pg_free.empty():
                await self._pg_free.get_nowait().close()
