"""Receivers that run inside the bench process and report receipts straight to the ledger.

Why in-process threads rather than processes: a receipt is stamped with the
same clock the ledger's intended times come from, so ledger end-to-end and the
span timeline share one clock; and every Redis subscriber still has its own
connection and its own `service.name` (`kafka.subscriber`, `kafka.reader`) via
a separate TracerProvider. Each thread only receives and stamps; the ledger
write is handed to the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from hopscope.core.attributes import EDGE_MESSAGING
from hopscope.instrumentation.carriers import TraceparentError, extract_kafka_headers, parse_envelope
from hopscope.instrumentation.derived import NS_PER_MS, derived_span
from hopscope.instrumentation.edges import KAFKA, REDIS, Edge, messaging_from
from hopscope.instrumentation.hops import LeafSpans, start_hop_span

from .common import STREAMS_SERVICE
from .glue import poll_batch

#: Event ids of the Streams app's warm-up records (not events of the run; no receipts).
WARMUP_PREFIX = "warmup-"
FROM_REDIS = messaging_from(REDIS)
FROM_KAFKA = messaging_from(KAFKA)
OUTPUT_APPEND_EDGE = Edge(client=STREAMS_SERVICE, server=KAFKA, type=EDGE_MESSAGING)
#: (event_id, subscriber, received_ns) — called from receiver threads.
Report = Callable[[str, str, int], None]


class RedisSubscriber(threading.Thread):
    """One subscriber: its own Redis connection subscribed to one channel."""

    def __init__(
        self,
        name: str,
        redis_url: str,
        channel: str,
        spans: LeafSpans,
        workload: str,
        report: Report,
        now_ns: Callable[[], int],
    ) -> None:
        super().__init__(name=f"subscriber-{name}", daemon=True)
        import redis

        self.sub_name = name
        self.channel = channel
        self.spans = spans
        self.workload = workload
        self.report = report
        self.now_ns = now_ns
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.received = 0
        self.errors: list[str] = []

    def run(self) -> None:
        # The subscribe confirmation arrives on the first read: after it, no message is missed.
        while not self.stopping.is_set():
            msg = self.pubsub.get_message(timeout=0.05)
            if not self.ready.is_set() and self.pubsub.subscribed:
                self.ready.set()
            if msg is None or msg.get("type") != "message":
                continue
            received = self.now_ns()
            try:
                env = parse_envelope(msg["data"], f"Redis channel {self.channel}")
            except TraceparentError as exc:
                self.errors.append(str(exc))
                continue
            self.spans.end(
                "subscriber.receive",
                event_id=env.event_id,
                workload=self.workload,
                kind=SpanKind.CONSUMER,
                parent=env.parent,
                edge=FROM_REDIS,
                subscriber=self.sub_name,
                start_time=received,
                attributes={
                    "messaging.system": "redis",
                    "messaging.destination.name": self.channel,
                    "messaging.destination.template": self.channel,  # fixed channels: the same
                },
            )
            self.received += 1
            self.report(env.event_id, self.sub_name, received)
        self.pubsub.close()
        self.client.close()

    def close(self) -> None:
        self.stopping.set()


class AggregateReader(threading.Thread):
    """The dashboard reader: sees each new aggregate value on the Streams app's output topic."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topic: str,
        consumer_cfg: dict[str, Any],
        tracer: trace.Tracer,
        report: Report,
        now_ns: Callable[[], int],
        max_poll_records: int,
    ) -> None:
        super().__init__(name="aggregate-reader", daemon=True)
        from confluent_kafka import Consumer, TopicPartition

        self.sub_name = name
        self.tracer = tracer
        self.report = report
        self.now_ns = now_ns
        self.topic = topic
        self.max_poll_records = max_poll_records
        self.consumer = Consumer(consumer_cfg)
        meta = self.consumer.list_topics(topic, timeout=15)
        parts = meta.topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        self.stopping = threading.Event()
        self.received = 0
        self.warmed = 0
        self.errors: list[str] = []

    def run(self) -> None:
        from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

        try:
            while not self.stopping.is_set():
                for msg in poll_batch(self.consumer, self.max_poll_records):
                    received = self.now_ns()
                    if msg.error():
                        self.errors.append(str(msg.error()))
                        continue
                    where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
                    try:
                        self._handle(msg, received, where, TIMESTAMP_LOG_APPEND_TIME)
                    except (ValueError, KeyError, TraceparentError) as exc:
                        self.errors.append(f"{where}: {exc}")
        finally:
            self.consumer.close()

    def _handle(self, msg: Any, received: int, where: str, log_append: int) -> None:
        agg = orjson.loads(msg.value())
        event_id = agg["last_event_id"]
        if event_id.startswith(WARMUP_PREFIX):
            self.warmed += 1
            return
        parent = extract_kafka_headers(msg.headers(), f"{where} headers")
        ts_type, ts_ms = msg.timestamp()
        if ts_type != log_append:
            raise ValueError(f"output record timestamp is not LogAppendTime (type {ts_type})")
        start = int(agg["updated_ns"])
        append = derived_span(
            self.tracer,
            "kafka.output.append",
            start,
            max(start, ts_ms * NS_PER_MS),
            parent=parent.span_context(),
            event_id=event_id,
            workload="aggregate",
            derived_from="output topic LogAppendTime (ms)",
            precision_ns=NS_PER_MS,
            links=[parent.span_context()],
            edge=OUTPUT_APPEND_EDGE,
        )
        span = start_hop_span(
            self.tracer,
            "reader.receive",
            event_id=event_id,
            workload="aggregate",
            kind=SpanKind.CONSUMER,
            parent=append.get_span_context(),
            links=[parent.span_context()],
            edge=FROM_KAFKA,
            subscriber=self.sub_name,
            start_time=received,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": self.topic,
                "messaging.destination.template": self.topic,
                "hopscope.aggregate.count": int(agg.get("count", 0)),
            },
        )
        span.end()
        self.received += 1
        self.report(event_id, self.sub_name, received)

    def close(self) -> None:
        self.stopping.set()
