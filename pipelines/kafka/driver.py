"""`KafkaDriver`: the four workloads on the Kafka stack, for the open-loop load generator.

| workload | what `send` does | who reports the receipt |
|---|---|---|
| write_notify | INSERT (autocommit, `synchronous_commit=on`) with a `traceparent` column | Redis subscribers (threads here) |
| fanout | produce to the events topic | per-subscriber Redis channels (threads here) |
| aggregate | produce to the Streams app's input topic; point reads: GET the IQ endpoint | the reader of the output topic (thread here) |
| ingest | produce to the events topic | the ingest process, once the row is committed (stdout line) |

The glue consumers (notifier, router, ingest) are separate processes (`glue.py`),
the aggregation is the Kafka Streams app (`streams_app.py`); all are started in
`setup` with the run's id and stopped in `teardown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import orjson

from hopscope.instrumentation.libraries import trace_client, within_traceparent
from hopscope.instrumentation.tracing import ENDPOINT_ENV, setup_tracing, shutdown_tracing

from ..driver import Ack, Driver, Event, PreflightError, RunContext
from ..workload import POINT_READ, Workload
from .common import (
    CONSUMER_LATENCY,
    LINGER_MS,
    READY,
    TOPIC_CONFIGS,
    EventPayload,
    Topics,
    consumer_config,
    now_ns,
    parse_receipt_line,
    producer_config,
    run_tag,
)
from .glue import CONFIG_ENV
from .streams_app import StreamsApp, StreamsAppError, StreamsSettings, ensure_jar, logged_configs
from .subscribers import WARMUP_PREFIX, AggregateReader, RedisSubscriber

WORKLOADS = ("write_notify", "fanout", "aggregate", "ingest")
WN_TABLE = "hopscope_wn_events"
WN_CONNECTOR = "hopscope-write-notify"
WN_PREFIX = "hopscope_wn"
WN_SLOT = "hopscope_wn_slot"
WN_TOPIC = f"{WN_PREFIX}.public.{WN_TABLE}"
INGEST_TABLE = "hopscope_ingest_events"
EVENT_PARTITIONS = 3
PG_POOL = 4
#: Untraced records pushed through a fresh Streams app before the load (JIT warm-up).
STREAMS_WARMUP = 2000


class KafkaDriver(Driver):
    stack: ClassVar[str] = "kafka"

    def __init__(
        self,
        config_path: Path | None = None,
        otlp_endpoint: str | None = None,
        otlp_http_endpoint: str | None = None,
        tracing: bool = True,
        check_collector: bool = True,
        iq_port: int = 27070,
        keep_topics: bool = False,
    ) -> None:
        from hopscope.deploy.base import Context
        from hopscope.deploy.config import load_config

        self.ctx = Context(load_config(config_path))
        collector = self.ctx.config.collector
        self.otlp_endpoint = (
            otlp_endpoint
            or next((os.environ[n] for n in ENDPOINT_ENV if os.environ.get(n)), None)
            or collector.otlp_grpc_endpoint
        )
        self.otlp_http = otlp_http_endpoint or f"http://127.0.0.1:{collector.otlp_http_port}"
        self.tracing = tracing
        self.check_collector = check_collector
        self.iq_port = iq_port
        self.keep_topics = keep_topics
        self._facts: dict[str, Any] = {}
        self._reset()

    def _reset(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._threads: list[Any] = []
        self._providers: list[Any] = []
        self._client: Any = None
        self._topics_made: list[str] = []
        self._streams: StreamsApp | None = None
        self._producer: Any = None
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._pg: deque[Any] = deque()
        self._pg_free: asyncio.Queue[Any] | None = None
        self._http: Any = None
        self._expected = 0
        self._received = 0
        self._idle: asyncio.Event | None = None
        self._tmp: Path | None = None

    # --- services ---------------------------------------------------------------------

    def _kafka(self) -> Any:
        from hopscope.deploy.services.kafka import Kafka

        return Kafka(self.ctx)

    def _connect(self) -> Any:
        from hopscope.deploy.services.kafka import Connect

        return Connect(self.ctx)

    def _dsn(self) -> str:
        from hopscope.deploy.services.postgres import Postgres

        return Postgres(self.ctx).dsn()

    def _redis_url(self) -> str:
        from hopscope.deploy.services.redis import Redis

        return Redis(self.ctx).url()

    # --- preflight --------------------------------------------------------------------

    def preflight(self, workload: Workload) -> None:
        if workload.name not in WORKLOADS:
            raise PreflightError(
                "kafka",
                "driver",
                f"workload {workload.name!r} is not one of the Kafka stack's {list(WORKLOADS)}",
            )
        if self.stack not in workload.stacks:
            raise PreflightError("kafka", "workload", f"workload {workload.name!r} defines no kafka hops")
        kafka = self._kafka()
        self._check_kafka(kafka)
        self._check_redis()
        self._check_postgres()
        if workload.name == "write_notify":
            self._check_connect()
        if workload.name == "aggregate":
            if shutil.which("java") is None:
                raise PreflightError("kafka-streams", "java", "no 'java' on PATH for the Streams app")
            try:
                self._jar = ensure_jar(self.ctx.cache_dir)
            except StreamsAppError as exc:
                raise PreflightError("kafka-streams", str(self.ctx.cache_dir), str(exc)) from exc
            if _port_open("127.0.0.1", self.iq_port):
                raise PreflightError(
                    "kafka-streams", f"127.0.0.1:{self.iq_port}", "interactive-query port already in use"
                )
        if self.tracing and self.check_collector:
            url = urlparse(self.otlp_endpoint if "//" in self.otlp_endpoint else f"//{self.otlp_endpoint}")
            if not _port_open(url.hostname or "127.0.0.1", url.port or 4317):
                raise PreflightError(
                    "collector",
                    self.otlp_endpoint,
                    "OTLP endpoint not reachable; spans would be lost "
                    "(`hopscope up --only collector`, or --no-tracing)",
                )

    def _check_kafka(self, kafka: Any) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient(
                {"bootstrap.servers": kafka.bootstrap(), "log_level": 0, "socket.timeout.ms": 3000}
            )
            brokers = admin.list_topics(timeout=5).brokers
        except KafkaException as exc:
            raise PreflightError("kafka", kafka.bootstrap(), f"metadata request failed: {exc}") from exc
        if len(brokers) < 3:
            raise PreflightError("kafka", kafka.bootstrap(), f"{len(brokers)} broker(s) up; RF 3 needs 3")

    def _check_redis(self) -> None:
        import redis

        url = self._redis_url()
        try:
            redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            raise PreflightError("redis", url.split("@")[-1], f"PING failed: {exc}") from exc

    def _check_postgres(self) -> None:
        import psycopg

        dsn = self._dsn()
        where = dsn.split("@")[-1]
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                value = conn.execute("SHOW synchronous_commit").fetchone()[0]
        except psycopg.Error as exc:
            raise PreflightError("postgres", where, f"connect failed: {exc}") from exc
        if value != "on":
            raise PreflightError("postgres", where, f"synchronous_commit is {value!r}; the study needs 'on'")
        self._facts["postgres"] = {"synchronous_commit": value}

    def _check_connect(self) -> None:
        import httpx

        url = self._connect().endpoint()
        try:
            plugins = httpx.get(f"{url}/connector-plugins", timeout=5)
            plugins.raise_for_status()
        except httpx.HTTPError as exc:
            raise PreflightError("connect", url, f"REST API not answering: {exc}") from exc
        if not any("PostgresConnector" in p.get("class", "") for p in plugins.json()):
            raise PreflightError("connect", url, "the Debezium Postgres connector is not installed")

    # --- setup ------------------------------------------------------------------------

    async def setup(self, workload: Workload, run: RunContext) -> None:
        self._reset()
        self.workload = workload
        self.run = run
        self.loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self.tag = run_tag(run.run_id)
        self.topics = Topics(self.tag)
        self.kafka = self._kafka()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"hopscope-kafka-{self.tag}-"))
        self.log_dir = (run.run_dir / "logs") if run.run_dir is not None else self._tmp
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(self._setup_sync, workload)
        except BaseException:
            # The load generator calls teardown only after a successful setup: stop what was started.
            await self.teardown()
            raise

    def _client_provider(self) -> Any:
        """The client side's library spans in this process (Kafka send, psycopg INSERT, httpx GET)."""
        if self._client is None:
            self._client = self._provider("kafka.client")
        return self._client

    def _provider(self, service: str) -> Any:
        provider = setup_tracing(
            service, "kafka", self.run.run_id, endpoint=self.otlp_endpoint, enabled=self.tracing
        )
        self._providers.append(provider)
        return provider

    def _setup_sync(self, workload: Workload) -> None:
        from confluent_kafka import Producer

        name = workload.name
        redis_url = self._redis_url()
        prefix = f"hopscope:{self.tag}:"
        if name in ("fanout", "aggregate", "ingest"):
            self._ensure_topic(self.topics.events, EVENT_PARTITIONS)
            self._producer = trace_client(
                Producer(producer_config(self.kafka.bootstrap())), self._client_provider()
            )
            self._poller = threading.Thread(
                target=self._poll_producer, name="kafka-producer-poll", daemon=True
            )
            self._poller.start()
        if name == "write_notify":
            self._setup_write_notify()
            self._spawn("notifier", topic=WN_TOPIC, redis_url=redis_url, channel_prefix=prefix)
            tracer = self._provider("kafka.subscriber").get_tracer("hopscope.pipelines.kafka")
            for sub in workload.subscriber_names:
                self._subscriber(sub, redis_url, f"{prefix}notify", tracer)
        elif name == "fanout":
            import redis

            r = redis.Redis.from_url(redis_url)
            filters_key = f"{prefix}filters"
            r.delete(filters_key)
            r.hset(filters_key, mapping={s.name: orjson.dumps(dict(s.filter)) for s in workload.subscribers})
            r.close()
            tracer = self._provider("kafka.subscriber").get_tracer("hopscope.pipelines.kafka")
            for sub in workload.subscriber_names:
                self._subscriber(sub, redis_url, f"{prefix}sub:{sub}", tracer)
            self._spawn(
                "router",
                topic=self.topics.events,
                redis_url=redis_url,
                channel_prefix=prefix,
                filters_key=filters_key,
            )
        elif name == "aggregate":
            self._setup_aggregate(workload)
        elif name == "ingest":
            self._setup_ingest()
            self._spawn("ingest", topic=self.topics.events, dsn=self._dsn(), table=INGEST_TABLE)
        for t in self._threads:
            if isinstance(t, RedisSubscriber) and not t.ready.wait(15):
                raise PreflightError(
                    "redis", t.channel, f"subscriber {t.sub_name} could not subscribe in 15 s"
                )
        self._facts.update(self._read_back(workload))

    def _ensure_topic(self, name: str, partitions: int) -> None:
        self.kafka.ensure_topic(name, partitions, rf=3, configs=TOPIC_CONFIGS)
        self._topics_made.append(name)

    def _subscriber(self, name: str, url: str, channel: str, tracer: Any) -> None:
        sub = RedisSubscriber(name, url, channel, tracer, self.workload.name, self._report, self.run.now_ns)
        sub.start()
        self._threads.append(sub)

    def _setup_write_notify(self) -> None:
        import psycopg

        from hopscope.deploy.base import wait_until
        from hopscope.deploy.services.kafka import debezium_postgres_config

        dsn = self._dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {WN_TABLE} (id bigserial PRIMARY KEY, run_id text NOT NULL, "
                "event_id text NOT NULL, key text NOT NULL, traceparent text NOT NULL, payload text NOT NULL, "
                "sent_ns bigint NOT NULL)"
            )
        # One connector and slot for every run (a slot per run would leave WAL pinned); the
        # notifier starts at the topic's end, so it never sees an earlier run's rows.
        self.kafka.ensure_topic(WN_TOPIC, 1, rf=3, configs=TOPIC_CONFIGS)
        connect = self._connect()
        config = debezium_postgres_config(
            dsn,
            tables=[f"public.{WN_TABLE}"],
            topic_prefix=WN_PREFIX,
            slot_name=WN_SLOT,
            publication_name="hopscope_wn_pub",
            secret=connect.secret_ref,
            poll_interval_ms=1,
            max_batch_size=256,
        )
        created = connect.put_connector_config(WN_CONNECTOR, config) == "created"
        if not created:
            status = connect.connector_status(WN_CONNECTOR)
            if status["connector"]["state"] == "PAUSED":
                connect.resume_connector(WN_CONNECTOR)
            elif any(t["state"] == "FAILED" for t in status.get("tasks", [])):
                connect.restart_connector(WN_CONNECTOR)
        connect.wait_connector_running(WN_CONNECTOR)
        with psycopg.connect(dsn, autocommit=True) as conn:

            def slot_active() -> None:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (WN_SLOT,)
                ).fetchone()
                if not row or not row[0]:
                    raise RuntimeError(f"replication slot {WN_SLOT} is not streaming")

            wait_until(slot_active, timeout=60, interval=0.2)

    def _setup_ingest(self) -> None:
        import psycopg

        with psycopg.connect(self._dsn(), autocommit=True) as conn:
            # No primary key on purpose: a redelivered record becomes a second row and a
            # second receipt, so the ledger counts it as a duplicate instead of hiding it.
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {INGEST_TABLE} (run_id text NOT NULL, event_id text NOT NULL, "
                "key text NOT NULL, payload text NOT NULL, sent_ns bigint NOT NULL, "
                "inserted_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )

    def _setup_aggregate(self, workload: Workload) -> None:
        import httpx

        self._ensure_topic(self.topics.aggregate_out, EVENT_PARTITIONS)
        jar = getattr(self, "_jar", None) or ensure_jar(self.ctx.cache_dir)
        assert self._tmp is not None
        app_id = f"hopscope-agg-{self.tag}"
        self._streams = StreamsApp(
            jar,
            StreamsSettings(
                bootstrap=self.kafka.bootstrap(),
                application_id=app_id,
                input_topic=self.topics.events,
                output_topic=self.topics.aggregate_out,
                query_port=self.iq_port,
                state_dir=self._tmp / "streams-state",
                run_id=self.run.run_id,
                otlp_http=self.otlp_http if self.tracing else "",
            ),
            self.log_dir / "kafka-streams.log",
        )
        self._streams.start()
        tracer = self._provider("kafka.reader").get_tracer("hopscope.pipelines.kafka")
        reader = AggregateReader(
            workload.subscriber_names[0],
            self.kafka.bootstrap(),
            self.topics.aggregate_out,
            {
                **consumer_config(self.kafka.bootstrap(), f"hopscope-reader-{self.tag}"),
                "auto.offset.reset": "earliest",
            },
            tracer,
            self._report,
            self.run.now_ns,
        )
        reader.start()
        self._threads.append(reader)
        self._warm_up_streams(reader)
        self._http = trace_client(
            httpx.AsyncClient(base_url=self._streams.url, timeout=10), self._client_provider()
        )

    def _warm_up_streams(self, reader: AggregateReader, count: int = STREAMS_WARMUP) -> None:
        """Push untraced records through the Streams app until the reader has seen them all.

        A fresh JVM runs its first thousand records interpreted; without this the first
        seconds of every short run measure the JIT, not the pipeline.
        """
        for i in range(count):
            body = orjson.dumps(
                {
                    "event_id": f"{WARMUP_PREFIX}{i}",
                    "key": f"{WARMUP_PREFIX}{i % 50}",
                    "fields": {},
                    "sent_ns": now_ns(),
                    "value": 1.0,
                    "warmup": True,
                }
            )
            self._producer.produce(self.topics.events, value=body, key=f"{WARMUP_PREFIX}{i % 50}".encode())
            if i % 100 == 99:
                self._producer.flush(10)
        self._producer.flush(30)
        deadline = time.monotonic() + 120
        while reader.warmed < count:
            if time.monotonic() > deadline:
                raise PreflightError(
                    "kafka-streams",
                    self._streams.url if self._streams else "?",
                    f"only {reader.warmed} of {count} warm-up records came through the Streams app in 120 s",
                )
            time.sleep(0.1)
        self._facts["streams_warmup_records"] = count

    def _spawn(self, role: str, **cfg: Any) -> None:
        config = {
            "role": role,
            "run_id": self.run.run_id,
            "bootstrap": self.kafka.bootstrap(),
            "otlp_endpoint": self.otlp_endpoint,
            "tracing": self.tracing,
            **cfg,
        }
        log = self.log_dir / f"kafka-{role}.log"
        env = {**os.environ, CONFIG_ENV: orjson.dumps(config).decode()}
        with log.open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hopscope.pipelines.kafka.glue", role],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        self._procs.append((role, proc, log))
        ready = threading.Event()
        reader = threading.Thread(
            target=self._read_stdout, args=(proc, ready), name=f"{role}-stdout", daemon=True
        )
        reader.start()
        if not ready.wait(60):
            proc.kill()
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise PreflightError(
                f"kafka.{role}", self.kafka.bootstrap(), f"not ready in 60 s; log {log}: {tail}"
            )

    def _read_stdout(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line == READY:
                ready.set()
                continue
            receipt = parse_receipt_line(line)
            if receipt is not None:
                self._report(*receipt)

    def _poll_producer(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    # --- receipts ---------------------------------------------------------------------

    def _report(self, event_id: str, subscriber: str, received_ns: int) -> None:
        self.loop.call_soon_threadsafe(self._on_receipt, event_id, subscriber, received_ns)

    def _on_receipt(self, event_id: str, subscriber: str, received_ns: int) -> None:
        self.run.receipt(event_id, subscriber, received_ns)
        self._received += 1
        if self._received >= self._expected and self._idle is not None:
            self._idle.set()

    # --- send -------------------------------------------------------------------------

    def send(self, event: Event) -> asyncio.Future[Ack]:
        if event.workload != POINT_READ:
            self._expected += len(event.expected_subscribers)
            if self._received < self._expected and self._idle is not None:
                self._idle.clear()
        traceparent = event.traceparent or _untraced_parent()
        name = self.workload.name
        if event.workload == POINT_READ:
            return asyncio.ensure_future(self._point_read(event, traceparent))
        if name == "write_notify":
            return asyncio.ensure_future(self._insert(event, traceparent))
        return self._produce(event, traceparent)

    def _payload(self, event: Event, sent: int) -> EventPayload:
        return EventPayload(
            event_id=event.event_id,
            key=event.key,
            fields=event.fields,
            sent_ns=sent,
            value=float(event.seq % 100),
            pad=event.payload.decode("ascii", "replace"),
        )

    def _produce(self, event: Event, traceparent: str) -> asyncio.Future[Ack]:
        fut: asyncio.Future[Ack] = self.loop.create_future()
        loop = self.loop

        def delivered(err: Any, _msg: Any) -> None:
            ack = Ack("ok", now_ns()) if err is None else Ack("error", now_ns(), f"Kafka delivery: {err}")
            loop.call_soon_threadsafe(_resolve, fut, ack)

        body = self._payload(event, now_ns()).encode()
        # Traced, the producer instrumentation injects its send span's context (a child of
        # the event's root); untraced, the record carries the event's context itself.
        headers = [] if self.tracing else [("traceparent", traceparent.encode())]
        try:
            with within_traceparent(traceparent, self.tracing):
                self._producer.produce(
                    self.topics.events,
                    value=body,
                    key=event.key.encode(),
                    headers=headers,
                    on_delivery=delivered,
                )
        except (BufferError, Exception) as exc:
            fut.set_result(Ack("error", now_ns(), f"produce failed: {type(exc).__name__}: {exc}"))
        return fut

    async def _insert(self, event: Event, traceparent: str) -> Ack:
        import psycopg

        if self._pg_free is None:
            self._pg_free = asyncio.Queue()
            for _ in range(PG_POOL):
                conn = await psycopg.AsyncConnection.connect(self._dsn(), autocommit=True)
                self._pg_free.put_nowait(trace_client(conn, self._client_provider()))
        conn = await self._pg_free.get()
        try:
            sent = now_ns()
            body = self._payload(event, sent).encode().decode()
            with within_traceparent(traceparent, self.tracing):  # the INSERT's span joins the event's trace
                await conn.execute(
                    f"INSERT INTO {WN_TABLE} (run_id, event_id, key, traceparent, payload, sent_ns) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (self.run.run_id, event.event_id, event.key, traceparent, body, sent),
                )
            return Ack("ok", now_ns())
        except psycopg.Error as exc:
            return Ack("error", now_ns(), f"INSERT failed: {exc}")
        finally:
            self._pg_free.put_nowait(conn)

    async def _point_read(self, event: Event, traceparent: str) -> Ack:
        import httpx

        headers = {
            "traceparent": traceparent,
            "hopscope-event-id": event.event_id,
            "hopscope-workload": POINT_READ,
        }
        try:
            # With tracing on, the httpx span is current and its inject replaces `traceparent`:
            # the Streams app's server span becomes its child (the analysis folds it into the hop).
            with within_traceparent(traceparent, self.tracing):
                r = await self._http.get(f"/aggregates/{event.key}", headers=headers)
        except httpx.HTTPError as exc:
            return Ack("error", now_ns(), f"interactive query failed: {exc}")
        # 404 is a valid answer: the key has no aggregate yet.
        if r.status_code in (200, 404):
            return Ack("ok", now_ns())
        return Ack("error", now_ns(), f"interactive query answered {r.status_code}: {r.text[:120]}")

    # --- drain and teardown -------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        assert self._idle is not None
        if self._received >= self._expected:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def teardown(self) -> None:
        await asyncio.to_thread(self._teardown_sync)
        if self._http is not None:
            await self._http.aclose()
        if self._pg_free is not None:
            while not self._pg_free.empty():
                await self._pg_free.get_nowait().close()

    def _teardown_sync(self) -> None:
        self._stop.set()
        if self._producer is not None:
            self._producer.flush(10)
        for _role, proc, _log in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for role, proc, _log in self._procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            self._facts.setdefault("glue_exit_codes", {})[role] = proc.returncode
        if self._streams is not None:
            self._streams.stop()
        for t in self._threads:
            t.close()
        for t in self._threads:
            t.join(5)
        self._facts["receiver_errors"] = [e for t in self._threads for e in t.errors][:50]
        for provider in self._providers:
            shutdown_tracing(provider)
        if self.workload.name == "write_notify":
            with contextlib.suppress(Exception):
                # Idle with poll.interval.ms=1 the task costs a good part of a core.
                self._connect().pause_connector(WN_CONNECTOR)
        if not self.keep_topics:
            self._delete_topics()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _delete_topics(self) -> None:
        admin = self.kafka.admin()
        names = list(self._topics_made)
        if self._streams is not None:
            app_id = self._streams.settings.application_id
            names += [t for t in admin.list_topics(timeout=10).topics if t.startswith(app_id)]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result(30)

    # --- manifest ---------------------------------------------------------------------

    def _read_back(self, workload: Workload) -> dict[str, Any]:
        """The fairness settings as the services report them, read once everything exists."""
        import httpx
        import psycopg

        facts: dict[str, Any] = {}
        topics = [WN_TOPIC] if workload.name == "write_notify" else [self.topics.events]
        if workload.name == "aggregate":
            topics.append(self.topics.aggregate_out)
        facts["topics"] = [self.kafka.topic_facts(t) for t in topics]
        broker = self.kafka.broker_configs()
        facts["broker"] = {
            k: broker.get(k) for k in ("min.insync.replicas", "default.replication.factor", "num.partitions")
        }
        with psycopg.connect(self._dsn()) as conn:
            facts["postgres"] = {"synchronous_commit": conn.execute("SHOW synchronous_commit").fetchone()[0]}
        facts["producer"] = {
            k: v for k, v in producer_config("").items() if k not in ("bootstrap.servers", "log_level")
        }
        facts["consumer"] = {k: v for k, v in CONSUMER_LATENCY.items() if k != "log_level"}
        facts["linger_ms"] = LINGER_MS
        if workload.name == "write_notify":
            url = self._connect().endpoint()
            config = httpx.get(f"{url}/connectors/{WN_CONNECTOR}/config", timeout=5).json()
            facts["debezium"] = {
                k: v
                for k, v in config.items()
                if k in ("poll.interval.ms", "max.batch.size", "plugin.name", "snapshot.mode")
                or k.startswith("producer.override.")
            }
        if workload.name == "aggregate" and self._streams is not None:
            internal = [
                t
                for t in self.kafka.admin().list_topics(timeout=10).topics
                if t.startswith(self._streams.settings.application_id) and t.endswith("-changelog")
            ]
            facts["streams"] = {
                "application_id": self._streams.settings.application_id,
                "changelog_topics": [self.kafka.topic_facts(t) for t in internal],
                # As the app's Kafka clients logged them at start (read back, not our intent).
                "logged_configs": logged_configs(self._streams.log),
            }
        return facts

    def manifest(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "simulation": False,
            "tracing": self.tracing,
            "otlp_endpoint": self.otlp_endpoint,
            "receipts_expected": self._expected,
            "receipts_received": self._received,
            **self._facts,
        }


def _resolve(fut: asyncio.Future[Ack], ack: Ack) -> None:
    if not fut.done():
        fut.set_result(ack)


def _untraced_parent() -> str:
    # With tracing off the carriers still need a syntactically valid context; nothing is exported.
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0
