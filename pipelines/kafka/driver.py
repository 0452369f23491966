"""`KafkaDriver`: the Kafka stack for the open-loop load generator — what every workload shares.

| workload | what `send` does | who reports the receipt | module |
|---|---|---|---|
| write_notify | INSERT (autocommit, `synchronous_commit=on`) with a `traceparent` column | Redis subscribers (threads here) | `write_notify.py` |
| fanout | produce to the events topic | per-subscriber Redis channels (threads here) | `fanout.py` |
| aggregate | produce to the Streams app's input topic; point reads: GET the IQ endpoint | the reader of the output topic (thread here) | `aggregate.py` |
| ingest | produce to the events topic | the ingest process, once the row is committed (stdout line) | `ingest.py` |

The driver holds the clients, the common preflight (brokers, Redis, Postgres, the collector),
the run's topics, producer, glue processes (`glue.py`) and subscriber threads, receipts,
teardown and the manifest; each workload's own steps are its `Pipeline` (`pipeline.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import orjson
import psutil
import psycopg
import redis
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from hopscope.core.attributes import EDGE_DATABASE, EDGE_MESSAGING
from hopscope.core.rundir import LOGS_DIR
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.services.kafka import Connect, Kafka
from hopscope.deploy.services.postgres import Postgres
from hopscope.deploy.services.redis import Redis
from hopscope.instrumentation.deferred import hot_path_provider
from hopscope.instrumentation.edges import KAFKA, POSTGRES, Edge
from hopscope.instrumentation.hops import LeafSpans
from hopscope.instrumentation.libraries import trace_client, within_traceparent
from hopscope.instrumentation.tracing import ENDPOINT_ENV, setup_tracing, shutdown_tracing

from ..driver import Ack, Driver, Event, PreflightError, RunContext
from ..workload import POINT_READ, Workload
from .aggregate import IQ_PORT, Aggregate
from .common import (
    CONFIG,
    READY,
    STREAMS_SERVICE,
    TOPIC_CONFIGS,
    EventPayload,
    Topics,
    consumer_config,
    now_ns,
    parse_receipt_line,
    producer_config,
    run_tag,
)
from .fanout import Fanout
from .glue import CONFIG_ENV
from .ingest import Ingest
from .pipeline import EVENT_PARTITIONS, Pipeline, port_open
from .subscribers import RedisSubscriber
from .tuning import KafkaTuning
from .write_notify import WriteNotify

#: workload → its pipeline on this stack
PIPELINES: dict[str, type[Pipeline]] = {p.workload: p for p in (WriteNotify, Fanout, Aggregate, Ingest)}
WORKLOADS = tuple(PIPELINES)
#: how long a glue process may take to exit (and send its held spans) before it is killed
GLUE_EXIT_TIMEOUT_S = 120.0
#: how long a glue process may take to print READY
GLUE_READY_TIMEOUT_S = 60.0
#: the Python glue's module (its command line is how a stray one is recognised)
GLUE_MODULE = "hopscope.pipelines.kafka.glue"


class KafkaDriver(Driver):
    stack: ClassVar[str] = "kafka"
    #: the workloads this stack's driver runs (a variant with other glue may run fewer)
    pipelines: ClassVar[dict[str, type[Pipeline]]] = PIPELINES

    def __init__(
        self,
        config_path: Path | None = None,
        otlp_endpoint: str | None = None,
        otlp_http_endpoint: str | None = None,
        tracing: bool = True,
        check_collector: bool = True,
        iq_port: int = IQ_PORT,
        keep_topics: bool = False,
        tuning: KafkaTuning | dict[str, Any] | None = None,
    ) -> None:
        # A profile's `stack_options.kafka.tuning` arrives as a dict; validated here too, so a
        # driver made without the experiment (bench, tests) refuses the same settings.
        self.tuning = tuning if isinstance(tuning, KafkaTuning) else KafkaTuning.model_validate(tuning or {})
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
        self.options: dict[str, Any] = {"iq_port": iq_port}
        self.keep_topics = keep_topics
        self.facts: dict[str, Any] = {}
        self.pipeline: Pipeline | None = None
        self._reset()

    def root_edge(self, workload: str) -> Edge | None:
        # The load generator's client calls Postgres, Kafka or the Streams app's query server;
        # only the last has a span of its own that could name the edge, and it does not.
        if workload == "write_notify":
            return Edge(server=POSTGRES, type=EDGE_DATABASE)
        if workload == POINT_READ:
            return Edge(server=STREAMS_SERVICE)
        return Edge(server=KAFKA, type=EDGE_MESSAGING)

    def _reset(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._threads: list[Any] = []
        self._providers: list[Any] = []
        self._client: Any = None
        self._topics_made: list[str] = []
        self.producer: Any = None
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._expected = 0
        self._received = 0
        self._idle: asyncio.Event | None = None
        self._tmp: Path | None = None
        #: per consumer process (glue roles, the bench's reader): the settings it reported
        self._consumers: list[dict[str, Any]] = []
        #: the config the run's producer was built with (None: the workload produces nothing)
        self._producer_cfg: dict[str, Any] | None = None

    # --- services ---------------------------------------------------------------------

    def _kafka(self) -> Kafka:
        return Kafka(self.ctx)

    def connect(self) -> Connect:
        return Connect(self.ctx)

    def dsn(self) -> str:
        """The bootstrap user's: setup only (tables, publications, grants, read-backs)."""
        return Postgres(self.ctx).dsn()

    def pipeline_dsn(self) -> str:
        """The data path's (INSERTs, the glue's reads and writes): the least-privilege role."""
        return Postgres(self.ctx).pipeline_dsn()

    def grant_pipeline(self, conn: Any, table: str) -> None:
        Postgres(self.ctx).grant_pipeline(conn, table)

    def redis_url(self) -> str:
        return Redis(self.ctx).url()

    # --- preflight --------------------------------------------------------------------

    def _pipeline_for(self, workload: Workload) -> Pipeline:
        if workload.name not in self.pipelines:
            raise PreflightError(
                self.stack,
                "driver",
                f"workload {workload.name!r} is not one of the {self.stack} stack's {list(self.pipelines)}",
            )
        if self.pipeline is None or self.pipeline.workload != workload.name:
            self.pipeline = self.pipelines[workload.name](self)
        return self.pipeline

    def preflight(self, workload: Workload) -> None:
        pipeline = self._pipeline_for(workload)
        kafka = self._kafka()
        self._check_kafka(kafka)
        self._check_redis()
        self._check_postgres()
        pipeline.preflight()
        if self.tracing and self.check_collector:
            url = urlparse(self.otlp_endpoint if "//" in self.otlp_endpoint else f"//{self.otlp_endpoint}")
            if not port_open(url.hostname or "127.0.0.1", url.port or 4317):
                raise PreflightError(
                    "collector",
                    self.otlp_endpoint,
                    "OTLP endpoint not reachable; spans would be lost "
                    "(`hopscope up --only collector`, or --no-tracing)",
                )

    def _check_kafka(self, kafka: Kafka) -> None:
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
        url = self.redis_url()
        try:
            redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            raise PreflightError("redis", url.split("@")[-1], f"PING failed: {exc}") from exc

    def _check_postgres(self) -> None:
        dsn = self.dsn()
        where = dsn.split("@")[-1]
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                value = conn.execute("SHOW synchronous_commit").fetchone()[0]
        except psycopg.Error as exc:
            raise PreflightError("postgres", where, f"connect failed: {exc}") from exc
        if value != "on":
            raise PreflightError("postgres", where, f"synchronous_commit is {value!r}; the study needs 'on'")
        self.facts["postgres"] = {"synchronous_commit": value}

    # --- setup ------------------------------------------------------------------------

    async def setup(self, workload: Workload, run: RunContext) -> None:
        self._reset()
        self._pipeline_for(workload)
        self.workload = workload
        self.run = run
        self.loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self.tag = run_tag(run.run_id)
        self.topics = Topics(self.tag)
        self.kafka = self._kafka()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"hopscope-kafka-{self.tag}-"))
        self.log_dir = (run.run_dir / LOGS_DIR) if run.run_dir is not None else self._tmp
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(self._setup_sync)
        except BaseException:
            # The load generator calls teardown only after a successful setup: stop what was started.
            await self.teardown()
            raise

    @property
    def tmp(self) -> Path:
        assert self._tmp is not None
        return self._tmp

    def client_provider(self) -> Any:
        """The client side's library spans in this process (Kafka send, psycopg INSERT, httpx GET)."""
        if self._client is None:
            # spans built at the flush (D15): the INSERT, the produce, the point read's GET
            self._client = hot_path_provider(self.provider("kafka.client"))
        return self._client

    def provider(self, service: str) -> Any:
        provider = setup_tracing(
            service, self.stack, self.run.run_id, endpoint=self.otlp_endpoint, enabled=self.tracing
        )
        self._providers.append(provider)
        return provider

    def _setup_sync(self) -> None:
        assert self.pipeline is not None
        if self.pipeline.produces_events:
            self.ensure_topic(self.topics.events, EVENT_PARTITIONS)
            self._producer_cfg = producer_config(self.kafka.bootstrap(), self.tuning)
            self.producer = trace_client(Producer(self._producer_cfg), self.client_provider())
            self._poller = threading.Thread(
                target=self._poll_producer, name="kafka-producer-poll", daemon=True
            )
            self._poller.start()
        self.pipeline.setup()
        for t in self._threads:
            if isinstance(t, RedisSubscriber) and not t.ready.wait(15):
                raise PreflightError(
                    "redis", t.channel, f"subscriber {t.sub_name} could not subscribe in 15 s"
                )
        self.facts.update(self._read_back())

    def ensure_topic(self, name: str, partitions: int) -> None:
        self.kafka.ensure_topic(name, partitions, rf=3, configs=TOPIC_CONFIGS)
        self._topics_made.append(name)

    def subscriber(self, name: str, url: str, channel: str, spans: LeafSpans) -> None:
        sub = RedisSubscriber(name, url, channel, spans, self.workload.name, self.report, self.run.now_ns)
        sub.start()
        self._threads.append(sub)

    def add_receiver(self, receiver: Any) -> None:
        """A receiver thread the pipeline started (closed and joined at teardown)."""
        self._threads.append(receiver)

    def glue_config(self, role: str, **cfg: Any) -> dict[str, Any]:
        """A glue process's config (`glue.GlueConfig`), the run's tuning included."""
        return {
            "role": role,
            "run_id": self.run.run_id,
            "bootstrap": self.kafka.bootstrap(),
            "otlp_endpoint": self.otlp_endpoint,
            "tracing": self.tracing,
            "tuning": self.tuning.model_dump(mode="json"),
            **cfg,
        }

    def glue_command(self, role: str) -> tuple[list[str], Path | None]:
        """How a glue process is started: argv and working directory (None: this one)."""
        return [sys.executable, "-m", GLUE_MODULE, role], None

    def spawn(self, role: str, **cfg: Any) -> None:
        config = self.glue_config(role, **cfg)
        log = self.log_dir / f"{self.stack}-{role}.log"
        env = {**os.environ, CONFIG_ENV: orjson.dumps(config).decode()}
        argv, cwd = self.glue_command(role)
        with log.open("ab") as err:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self._procs.append((role, proc, log))
        ready = threading.Event()
        reader = threading.Thread(
            target=self._read_stdout, args=(proc, ready, role), name=f"{role}-stdout", daemon=True
        )
        reader.start()
        deadline = time.monotonic() + GLUE_READY_TIMEOUT_S
        # a process that dies before READY (a missing package, a refused config) fails at once
        while not ready.wait(0.2) and proc.poll() is None and time.monotonic() < deadline:
            pass
        if not ready.is_set():
            exited = proc.poll()
            proc.kill()
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            why = (
                f"exited {exited} before READY"
                if exited is not None
                else f"not ready in {GLUE_READY_TIMEOUT_S:.0f} s"
            )
            raise PreflightError(f"kafka.{role}", self.kafka.bootstrap(), f"{why}; log {log}: {tail}")

    def _read_stdout(self, proc: subprocess.Popen[bytes], ready: threading.Event, role: str) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line == READY:
                ready.set()
                continue
            if line.startswith(f"{CONFIG} "):
                self.report_consumer(role, orjson.loads(line[len(CONFIG) + 1 :]))
                continue
            receipt = parse_receipt_line(line)
            if receipt is not None:
                self.report(*receipt)

    def _poll_producer(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    # --- clean start ------------------------------------------------------------------

    async def backlog(self) -> dict[str, float]:
        return await asyncio.to_thread(self._backlog_sync)

    def _backlog_sync(self) -> dict[str, float]:
        assert self.pipeline is not None
        return {
            # followers still copying an earlier run's records take the brokers' disks and CPU
            "under-replicated partitions": float(self._under_replicated()),
            "stray pipeline processes": float(len(stray_processes(self._own_pids()))),
            **self.pipeline.backlog(),
        }

    def _under_replicated(self) -> int:
        meta = self.kafka.admin().list_topics(timeout=10)
        return sum(len(p.isrs) < len(p.replicas) for t in meta.topics.values() for p in t.partitions.values())

    def _own_pids(self) -> set[int]:
        assert self.pipeline is not None
        return {proc.pid for _role, proc, _log in self._procs} | self.pipeline.pids()

    # --- receipts ---------------------------------------------------------------------

    def report_consumer(self, client: str, settings: dict[str, Any]) -> None:
        """A consumer's settings as the process that built it reports them (manifest `consumers`)."""
        self._consumers.append({"client": client, **settings})

    def report(self, event_id: str, subscriber: str, received_ns: int) -> None:
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
        assert self.pipeline is not None
        return self.pipeline.send(event, traceparent)

    def payload_of(self, event: Event, sent: int) -> EventPayload:
        return EventPayload(
            event_id=event.event_id,
            key=event.key,
            fields=event.fields,
            sent_ns=sent,
            value=float(event.seq % 100),
            pad=event.payload.decode("ascii", "replace"),
        )

    def produce(self, event: Event, traceparent: str) -> asyncio.Future[Ack]:
        fut: asyncio.Future[Ack] = self.loop.create_future()
        loop = self.loop

        def delivered(err: Any, _msg: Any) -> None:
            ack = Ack("ok", now_ns()) if err is None else Ack("error", now_ns(), f"Kafka delivery: {err}")
            loop.call_soon_threadsafe(_resolve, fut, ack)

        body = self.payload_of(event, now_ns()).encode()
        # Traced, the producer instrumentation injects its send span's context (a child of
        # the event's root); untraced, the record carries the event's context itself.
        headers = [] if self.tracing else [("traceparent", traceparent.encode())]
        try:
            with within_traceparent(traceparent, self.tracing):
                self.producer.produce(
                    self.topics.events,
                    value=body,
                    key=event.key.encode(),
                    headers=headers,
                    on_delivery=delivered,
                )
        except (BufferError, Exception) as exc:
            fut.set_result(Ack("error", now_ns(), f"produce failed: {type(exc).__name__}: {exc}"))
        return fut

    # --- drain and teardown -------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        assert self._idle is not None
        if self._received >= self._expected:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def teardown(self) -> None:
        await asyncio.to_thread(self._teardown_sync)
        if self.pipeline is not None:
            await self.pipeline.aclose()

    def _teardown_sync(self) -> None:
        self._stop.set()
        if self.producer is not None:
            self.producer.flush(10)
        for _role, proc, _log in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for role, proc, _log in self._procs:
            try:
                # a glue process sends its spans on the way out (deferred export): ~20 us a span
                proc.wait(GLUE_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.facts.setdefault("glue_killed", []).append(role)
                proc.kill()
                proc.wait(5)
            self.facts.setdefault("glue_exit_codes", {})[role] = proc.returncode
        if self.pipeline is not None:
            self.pipeline.stop()
        for t in self._threads:
            t.close()
        for t in self._threads:
            t.join(5)
        self.facts["receiver_errors"] = [e for t in self._threads for e in t.errors][:50]
        for provider in self._providers:
            shutdown_tracing(provider)
        if self.pipeline is not None:
            self.pipeline.after_stop()
        if not self.keep_topics:
            self._delete_topics()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _delete_topics(self) -> None:
        admin = self.kafka.admin()
        names = list(self._topics_made)
        if self.pipeline is not None:
            names += self.pipeline.owned_topics(admin)
        if names:
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result(30)

    # --- manifest ---------------------------------------------------------------------

    def _read_back(self) -> dict[str, Any]:
        """The fairness settings as the services report them, read once everything exists."""
        assert self.pipeline is not None
        facts: dict[str, Any] = {}
        facts["topics"] = [self.kafka.topic_facts(t) for t in self.pipeline.topics()]
        broker = self.kafka.broker_configs()
        facts["broker"] = {
            k: broker.get(k) for k in ("min.insync.replicas", "default.replication.factor", "num.partitions")
        }
        with psycopg.connect(self.dsn()) as conn:
            facts["postgres"] = {"synchronous_commit": conn.execute("SHOW synchronous_commit").fetchone()[0]}
        # the producer's config as it was built (write_notify's producer is Debezium's: its own
        # section); the consumers' tuned config; each consumer process's own report
        producer = self._producer_cfg or producer_config("", self.tuning)
        facts["producer"] = {k: v for k, v in producer.items() if k not in ("bootstrap.servers", "log_level")}
        facts["consumer"] = {
            k: v for k, v in consumer_config("", "", self.tuning).items()
            if k not in ("bootstrap.servers", "group.id", "log_level")
        }  # fmt: skip
        facts["consumers"] = list(self._consumers)
        facts["linger_ms"] = self.tuning.producer.linger_ms
        facts["tuning"] = self.tuning.model_dump(mode="json")
        facts.update(self.pipeline.read_back())
        return facts

    def manifest(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "simulation": False,
            "tracing": self.tracing,
            "otlp_endpoint": self.otlp_endpoint,
            "receipts_expected": self._expected,
            "receipts_received": self._received,
            **self.facts,
        }


def stray_processes(own: set[int]) -> list[int]:
    """Pids of Kafka-stack pipeline processes that belong to no running bench: a bench killed
    before its teardown leaves them consuming (glue processes exit when their parent goes;
    a Streams app JVM started in its own session does not)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.info["pid"] in own:
                continue
            cmd = " ".join(proc.info.get("cmdline") or [])
            marked = GLUE_MODULE in cmd
            if not marked and "java" in cmd and "-jar" in cmd:
                marked = "HOPSCOPE_APP_ID" in proc.environ()
            if not marked and "node" in cmd:
                # a glue process in another language: its config is in its environment
                marked = CONFIG_ENV in proc.environ()
            if marked and not _has_live_bench_parent(proc):
                found.append(proc.info["pid"])
        except (psutil.Error, OSError):
            continue
    return found


def _has_live_bench_parent(proc: psutil.Process) -> bool:
    # A pipeline process of another bench running now is not a stray: its parent is a Python
    # process that is alive (a stray's parent is init or a subreaper).
    # A console script (`hopscope run`) is named after the script, not the interpreter: its
    # command line starts with the interpreter.
    parent = proc.parent()
    if parent is None or parent.pid <= 1:
        return False
    return "python" in (parent.name() or "") or "python" in ((parent.cmdline() or [""])[0])


def _resolve(fut: asyncio.Future[Ack], ack: Ack) -> None:
    if not fut.done():
        fut.set_result(ack)


def _untraced_parent() -> str:
    # With tracing off the carriers still need a syntactically valid context; nothing is exported.
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"
