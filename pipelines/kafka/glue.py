"""The Python glue services of the Kafka stack, one OS process each.

`HOPSCOPE_GLUE_CONFIG='<json>' python -m hopscope.pipelines.kafka.glue <role>` runs one of:

- `notifier` (write_notify): Debezium change events → Redis pub/sub channel;
- `router` (fanout): events → filters held in Redis → per-subscriber channels;
- `ingest` (ingest): events → Postgres rows; reports a receipt per committed row
  on stdout (`R <event_id> sink <ns>`), which the bench process feeds to the ledger.

Each has its own `service.name` (`kafka.<role>`) and continues every event's
trace: derived spans for the hops that emit none (Postgres commit, Debezium
read, broker append), then its consumer span as a child of the last of them
with a link to the upstream producer span. Prints `CONFIG <json>` (the consumer
settings it runs with, from the config's `tuning`) and then `READY` once its consumer
is assigned to the topic's partitions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaException, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind

from hopscope.core.attributes import EDGE_DATABASE, EDGE_MESSAGING
from hopscope.instrumentation.carriers import (
    TraceparentError,
    extract_kafka_headers,
    make_envelope,
    parse_traceparent,
)
from hopscope.instrumentation.deferred import hot_path_provider, hot_path_tracer
from hopscope.instrumentation.derived import NS_PER_MS, DerivedHop, derived_chain, us_to_ns
from hopscope.instrumentation.edges import CONNECT, KAFKA, POSTGRES, REDIS, Edge, messaging_from
from hopscope.instrumentation.hops import hop_span
from hopscope.instrumentation.libraries import trace_client
from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing

from .common import CONFIG, DEFAULT_TUNING, READY, EventPayload, consumer_config, now_ns, receipt_line
from .tuning import KafkaTuning

CONFIG_ENV = "HOPSCOPE_GLUE_CONFIG"

# The service-map edges these processes' spans name (instrumentation/edges.py). Debezium has no
# spans here: its two edges are named on the derived hops built from its change events.
CAPTURE_EDGE = Edge(client=POSTGRES, server=CONNECT)
CDC_APPEND_EDGE = Edge(client=CONNECT, server=KAFKA, type=EDGE_MESSAGING)
PUBLISH_EDGE = Edge(server=REDIS, type=EDGE_MESSAGING)
INSERT_EDGE = Edge(server=POSTGRES, type=EDGE_DATABASE)


@dataclass
class GlueConfig:
    role: str
    run_id: str
    bootstrap: str
    topic: str
    redis_url: str = ""
    dsn: str = ""
    channel_prefix: str = ""
    filters_key: str = ""
    table: str = ""
    otlp_endpoint: str | None = None
    tracing: bool = True
    #: `KafkaTuning` as JSON (the bench's, so both processes use one source); {} = the defaults
    tuning: dict[str, Any] = field(default_factory=dict)

    @property
    def kafka_tuning(self) -> KafkaTuning:
        return KafkaTuning.model_validate(self.tuning) if self.tuning else DEFAULT_TUNING

    def consumer_settings(self) -> dict[str, Any]:
        """The consumer's librdkafka config for this process."""
        return consumer_config(self.bootstrap, f"hopscope-{self.role}-{self.run_id}", self.kafka_tuning)

    @classmethod
    def from_env(cls) -> GlueConfig:
        # Passed in the environment, not a file: the DSN and Redis URL hold passwords.
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            raise SystemExit(f"{CONFIG_ENV} is not set")
        return cls(**orjson.loads(raw))


@dataclass
class Incoming:
    """One consumed record, its trace context and the hop spans already emitted for it."""

    event_id: str
    workload: str
    producer: SpanContext  # the span that produced the record (link target)
    parent: SpanContext  # the last derived span: the consumer span's parent
    payload: EventPayload
    polled_ns: int


def _append_ns(msg: Any, where: str) -> int:
    ts_type, ts_ms = msg.timestamp()
    if ts_type != TIMESTAMP_LOG_APPEND_TIME:
        raise ValueError(f"{where}: record timestamp is not LogAppendTime (type {ts_type})")
    return ts_ms * NS_PER_MS


def _chain(start_ns: int, steps: list[tuple[str, int, str, int, Edge | None]]) -> list[DerivedHop]:
    """Derived hops with monotone ends: a coarser clock (µs, ms) may put an end before the previous one."""
    hops = []
    previous = start_ns
    for hop, end_ns, source, precision, edge in steps:
        end_ns = max(end_ns, previous)
        hops.append(DerivedHop(hop, end_ns, source, precision, edge))
        previous = end_ns
    return hops


def poll_batch(consumer: Any, max_records: int, wait_s: float = 0.05) -> list[Any]:
    """The first message as soon as it arrives, then whatever else is already fetched, up to
    `max_records` in all (the tuning's `consumer.max_poll_records`).

    `consume(n, timeout)` alone waits for n messages or the whole timeout: up to
    `wait_s` of artificial delay on every event at low rates.
    """
    first = consumer.poll(wait_s)
    if first is None:
        return []
    return [first, *(consumer.consume(max_records - 1, timeout=0) if max_records > 1 else [])]


def reported_settings(consumer_cfg: dict[str, Any], max_poll_records: int) -> dict[str, Any]:
    """What a process reports of the consumer it built (the manifest's `consumers[]`): its
    config without addresses, group and logging, plus the records a poll takes."""
    out = {k: v for k, v in consumer_cfg.items() if k not in ("bootstrap.servers", "group.id", "log_level")}
    return {**out, "max_poll_records": max_poll_records}


class Glue:
    def __init__(self, cfg: GlueConfig) -> None:
        self.cfg = cfg
        self.provider = setup_tracing(
            f"kafka.{cfg.role}", "kafka", cfg.run_id, endpoint=cfg.otlp_endpoint, enabled=cfg.tracing
        )
        # spans built at the flush, their ids drawn here (D15): the consume/publish path does
        # no SDK work while the run goes on
        self.tracer = hot_path_tracer(self.provider, "hopscope.pipelines.kafka")
        #: for the contrib instrumentations of this process's clients: their spans deferred too
        self.client_provider = hot_path_provider(self.provider)
        self.stop = threading.Event()
        self.errors = 0
        self.foreign_rows = 0  # CDC rows of other runs, skipped
        settings = cfg.consumer_settings()
        self.max_poll_records = cfg.kafka_tuning.consumer.max_poll_records
        self.consumer = Consumer(settings)
        self.reported = reported_settings(settings, self.max_poll_records)

    # --- decoding ---------------------------------------------------------------------

    def decode_event(self, msg: Any, workload: str) -> Incoming:
        """A produced event: traceparent header, JSON payload with sent_ns; one derived hop (append)."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        payload = EventPayload.decode(msg.value(), where)
        producer = extract_kafka_headers(msg.headers(), f"{where} headers").span_context()
        hops = _chain(
            payload.sent_ns, [("kafka.append", _append_ns(msg, where), "LogAppendTime (ms)", NS_PER_MS, None)]
        )
        parent = derived_chain(
            self.tracer,
            payload.sent_ns,
            hops,
            parent=producer,
            event_id=payload.event_id,
            workload=workload,
            link=producer,
        )
        return Incoming(payload.event_id, workload, producer, parent, payload, now_ns())

    def decode_change(self, msg: Any) -> Incoming | None:
        """A Debezium change event: the row's traceparent column, three derived hops."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        polled = now_ns()
        if msg.value() is None:
            return None  # tombstone after a delete
        change = orjson.loads(msg.value())
        if change.get("op") != "c":
            return None  # only inserts are events; updates/deletes are housekeeping
        after = change.get("after") or {}
        if after.get("run_id") != self.cfg.run_id:
            # a row an earlier run left in the shared slot: not this run's event (the clean
            # start waits for those to drain before the first event; this keeps them out anyway)
            self.foreign_rows += 1
            return None
        missing = [k for k in ("event_id", "traceparent", "payload", "sent_ns") if after.get(k) is None]
        if missing:
            raise ValueError(f"{where}: change event 'after' lacks column(s) {missing}")
        source = change.get("source") or {}
        if not isinstance(source.get("ts_us"), int) or not isinstance(change.get("ts_us"), int):
            raise ValueError(f"{where}: change event lacks source.ts_us or ts_us")
        producer = parse_traceparent(after["traceparent"], f"{where}.after.traceparent").span_context()
        payload = EventPayload.decode(after["payload"], f"{where}.after.payload")
        hops = _chain(
            after["sent_ns"],
            [
                ("pg.commit", us_to_ns(source["ts_us"]), "source.ts_us", 1_000, None),
                ("debezium.capture", us_to_ns(change["ts_us"]), "ts_us", 1_000, CAPTURE_EDGE),
                ("kafka.append", _append_ns(msg, where), "LogAppendTime (ms)", NS_PER_MS, CDC_APPEND_EDGE),
            ],
        )
        parent = derived_chain(
            self.tracer,
            after["sent_ns"],
            hops,
            parent=producer,
            event_id=after["event_id"],
            workload="write_notify",
            link=producer,
        )
        return Incoming(after["event_id"], "write_notify", producer, parent, payload, polled)

    # --- the loop ---------------------------------------------------------------------

    def assign(self) -> None:
        meta = self.consumer.list_topics(self.cfg.topic, timeout=15)
        topic = meta.topics.get(self.cfg.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise RuntimeError(f"topic {self.cfg.topic} not found on {self.cfg.bootstrap}")
        parts = []
        for p in topic.partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.cfg.topic, p), timeout=10)
            parts.append(TopicPartition(self.cfg.topic, p, high))
        # Explicit assignment at the high watermark: no group rebalance, nothing of an earlier run.
        self.consumer.assign(parts)

    def run(self, handle: Callable[[list[Any]], None]) -> None:
        self.assign()
        # before READY: the driver has the line once spawn() returns
        print(f"{CONFIG} {orjson.dumps(self.reported).decode()}", flush=True)
        print(READY, flush=True)
        parent = os.getppid()
        try:
            # A bench process that dies without teardown must not leave its consumers running.
            while not self.stop.is_set() and os.getppid() == parent:
                msgs = poll_batch(self.consumer, self.max_poll_records)
                good = []
                for msg in msgs:
                    if msg.error():
                        self.errors += 1
                        print(f"consumer error: {msg.error()}", file=sys.stderr, flush=True)
                    else:
                        good.append(msg)
                if good:
                    handle(good)
        finally:
            if self.foreign_rows:
                print(f"skipped {self.foreign_rows} CDC row(s) of other runs", file=sys.stderr, flush=True)
            self.consumer.close()
            shutdown_tracing(self.provider)

    def consume_span(self, inc: Incoming, hop: str) -> Any:
        """The consumer's processing span: a child of the upstream context and linked to the producer."""
        return hop_span(
            self.tracer,
            hop,
            event_id=inc.event_id,
            workload=inc.workload,
            kind=SpanKind.CONSUMER,
            parent=inc.parent,
            links=[inc.producer],
            start_time=inc.polled_ns,
            attributes={"messaging.system": "kafka", "messaging.operation.type": "process"},
            edge=messaging_from(KAFKA),
        )

    def skip(self, msg: Any, exc: Exception) -> None:
        # Counted and logged; the ledger shows the event as lost.
        self.errors += 1
        print(f"skipped {msg.topic()}[{msg.partition()}]@{msg.offset()}: {exc}", file=sys.stderr, flush=True)


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5)


def run_notifier(cfg: GlueConfig) -> None:
    glue = Glue(cfg)
    r = trace_client(_redis(cfg.redis_url), glue.client_provider)
    channel = f"{cfg.channel_prefix}notify"

    def handle(msgs: list[Any]) -> None:
        for msg in msgs:
            try:
                inc = glue.decode_change(msg)
            except (ValueError, TraceparentError, KafkaException) as exc:
                glue.skip(msg, exc)
                continue
            if inc is None:
                continue
            _publish_one(glue, r, inc, "notifier.consume", [channel])

    glue.run(handle)


def _publish_one(glue: Glue, r: Any, inc: Incoming, consume_hop: str, channels: list[str]) -> None:
    tracer = glue.tracer
    with (
        glue.consume_span(inc, consume_hop),
        hop_span(
            tracer,
            "redis.publish",
            event_id=inc.event_id,
            workload=inc.workload,
            kind=SpanKind.PRODUCER,
            edge=PUBLISH_EDGE,
            attributes={
                "db.system.name": "redis",
                "messaging.system": "redis",
                "hopscope.channels": len(channels),
            },
        ) as pub,
    ):
        body = make_envelope(inc.event_id, {"key": inc.payload.key, "fields": inc.payload.fields}, pub)
        if len(channels) == 1:
            r.publish(channels[0], body)
        else:
            pipe = r.pipeline(transaction=False)
            for ch in channels:
                pipe.publish(ch, body)
            pipe.execute()


def run_router(cfg: GlueConfig) -> None:
    glue = Glue(cfg)
    r = trace_client(_redis(cfg.redis_url), glue.client_provider)

    def matching(filters: dict[bytes, bytes], fields: dict[str, str]) -> list[str]:
        out = []
        for name, raw in filters.items():
            spec = orjson.loads(raw)
            if all(fields.get(f) in accepted for f, accepted in spec.items()):
                out.append(f"{cfg.channel_prefix}sub:{name.decode()}")
        return out

    def handle(msgs: list[Any]) -> None:
        for msg in msgs:
            try:
                inc = glue.decode_event(msg, "fanout")
            except (ValueError, TraceparentError, KafkaException) as exc:
                glue.skip(msg, exc)
                continue
            with glue.consume_span(inc, "router.consume"):
                with hop_span(
                    glue.tracer,
                    "redis.route",
                    event_id=inc.event_id,
                    workload=inc.workload,
                    kind=SpanKind.CLIENT,
                    edge=Edge(server=REDIS, type=EDGE_DATABASE),
                    attributes={"db.system.name": "redis", "db.operation.name": "HGETALL"},
                ):
                    channels = matching(r.hgetall(cfg.filters_key), inc.payload.fields)
                if not channels:
                    continue
                with hop_span(
                    glue.tracer,
                    "redis.publish",
                    event_id=inc.event_id,
                    workload=inc.workload,
                    kind=SpanKind.PRODUCER,
                    edge=PUBLISH_EDGE,
                    attributes={"messaging.system": "redis", "hopscope.channels": len(channels)},
                ) as pub:
                    body = make_envelope(
                        inc.event_id, {"key": inc.payload.key, "fields": inc.payload.fields}, pub
                    )
                    pipe = r.pipeline(transaction=False)
                    for ch in channels:
                        pipe.publish(ch, body)
                    pipe.execute()

    glue.run(handle)


def run_ingest(cfg: GlueConfig) -> None:
    import psycopg

    glue = Glue(cfg)
    conn = trace_client(psycopg.connect(cfg.dsn, autocommit=False), glue.client_provider)
    insert = f"INSERT INTO {cfg.table} (run_id, event_id, key, payload, sent_ns) VALUES (%s, %s, %s, %s, %s)"
    out = sys.stdout

    def handle(msgs: list[Any]) -> None:
        batch: list[tuple[Incoming, trace.Span, bytes]] = []
        for msg in msgs:
            try:
                inc = glue.decode_event(msg, "ingest")
            except (ValueError, TraceparentError, KafkaException) as exc:
                glue.skip(msg, exc)
                continue
            with glue.consume_span(inc, "ingest.consume") as consume:
                pass
            batch.append((inc, consume, msg.value()))
        if not batch:
            return
        start = now_ns()
        # One transaction per fetched batch: the consumer's natural unit; every row's
        # pg.insert span covers the statement and the commit it waited for. The
        # statement's own (psycopg) span nests under the first row's.
        spans = [
            glue.tracer.start_span(
                "pg.insert",
                context=trace.set_span_in_context(consume),
                kind=SpanKind.CLIENT,
                start_time=start,
                attributes={
                    "hopscope.hop": "pg.insert",
                    "hopscope.event_id": inc.event_id,
                    "hopscope.workload": inc.workload,
                    "hopscope.subscriber": "sink",
                    "db.system.name": "postgresql",
                    "db.operation.name": "INSERT",
                    "db.collection.name": cfg.table,
                    "db.operation.batch.size": len(batch),
                    **INSERT_EDGE.attributes_for(glue.tracer),
                },
            )
            for inc, consume, _ in batch
        ]
        with trace.use_span(spans[0]), conn.cursor() as cur:
            cur.executemany(
                insert,
                [
                    (cfg.run_id, i.event_id, i.payload.key, raw.decode(), i.payload.sent_ns)
                    for i, _, raw in batch
                ],
            )
        conn.commit()
        done = now_ns()
        lines = []
        for (inc, _, _), span in zip(batch, spans, strict=True):
            span.end(end_time=done)
            lines.append(receipt_line(inc.event_id, "sink", done))
        out.write("".join(lines))
        out.flush()

    glue.run(handle)


ROLES: dict[str, Callable[[GlueConfig], None]] = {
    "notifier": run_notifier,
    "router": run_router,
    "ingest": run_ingest,
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ROLES:
        print(
            f"usage: {CONFIG_ENV}='{{...}}' python -m hopscope.pipelines.kafka.glue {{{','.join(ROLES)}}}",
            file=sys.stderr,
        )
        return 2
    cfg = GlueConfig.from_env()
    # SIGTERM ends the loop through KeyboardInterrupt so spans are flushed on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        ROLES[args[0]](cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
