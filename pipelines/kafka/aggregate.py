"""aggregate on the Kafka stack: produce to the run's events topic → the Kafka Streams app
(`streams/`, KV store, changelog RF 3) → the output topic → the reader (a thread); point reads
GET the app's interactive-query endpoint."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson

from hopscope.instrumentation.libraries import trace_client, within_traceparent

from ..driver import Ack, Event, PreflightError
from ..workload import POINT_READ
from .common import consumer_config, now_ns
from .glue import reported_settings
from .pipeline import EVENT_PARTITIONS, Pipeline, port_open
from .streams_app import StreamsApp, StreamsAppError, StreamsSettings, ensure_jar, logged_configs
from .subscribers import WARMUP_PREFIX, AggregateReader

#: Untraced records pushed through a fresh Streams app before the load (JIT warm-up).
STREAMS_WARMUP = 2000
#: The interactive-query port of the Streams app (a driver option: `iq_port`).
IQ_PORT = 27070


class Aggregate(Pipeline):
    workload: ClassVar[str] = "aggregate"

    _jar: Path | None = None
    _streams: StreamsApp | None = None
    _http: httpx.AsyncClient | None = None

    def preflight(self) -> None:
        host = self.host
        if shutil.which("java") is None:
            raise PreflightError("kafka-streams", "java", "no 'java' on PATH for the Streams app")
        try:
            self._jar = ensure_jar(host.ctx.cache_dir)
        except StreamsAppError as exc:
            raise PreflightError("kafka-streams", str(host.ctx.cache_dir), str(exc)) from exc
        if port_open("127.0.0.1", self.iq_port):
            raise PreflightError(
                "kafka-streams", f"127.0.0.1:{self.iq_port}", "interactive-query port already in use"
            )

    @property
    def iq_port(self) -> int:
        return int(self.host.options.get("iq_port", IQ_PORT))

    def setup(self) -> None:
        host = self.host
        host.ensure_topic(host.topics.aggregate_out, EVENT_PARTITIONS)
        jar = self._jar or ensure_jar(host.ctx.cache_dir)
        app_id = f"hopscope-agg-{host.tag}"
        self._streams = StreamsApp(
            jar,
            StreamsSettings(
                bootstrap=host.kafka.bootstrap(),
                application_id=app_id,
                input_topic=host.topics.events,
                output_topic=host.topics.aggregate_out,
                query_port=self.iq_port,
                state_dir=host.tmp / "streams-state",
                run_id=host.run.run_id,
                otlp_http=host.otlp_http if host.tracing else "",
                tuning=host.tuning,
            ),
            host.log_dir / "kafka-streams.log",
        )
        self._streams.start()
        tracer = host.provider("kafka.reader").get_tracer("hopscope.pipelines.kafka")
        reader_cfg = {
            **consumer_config(host.kafka.bootstrap(), f"hopscope-reader-{host.tag}", host.tuning),
            "auto.offset.reset": "earliest",
        }
        max_poll = host.tuning.consumer.max_poll_records
        reader = AggregateReader(
            host.workload.subscriber_names[0],
            host.kafka.bootstrap(),
            host.topics.aggregate_out,
            reader_cfg,
            tracer,
            host.report,
            host.run.now_ns,
            max_poll,
        )
        host.report_consumer("reader", reported_settings(reader_cfg, max_poll))
        reader.start()
        host.add_receiver(reader)
        self._warm_up_streams(reader)
        self._http = trace_client(
            httpx.AsyncClient(base_url=self._streams.url, timeout=10), host.client_provider()
        )

    def _warm_up_streams(self, reader: AggregateReader, count: int = STREAMS_WARMUP) -> None:
        """Push untraced records through the Streams app until the reader has seen them all.

        A fresh JVM runs its first thousand records interpreted; without this the first
        seconds of every short run measure the JIT, not the pipeline.
        """
        producer = self.host.producer
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
            producer.produce(self.host.topics.events, value=body, key=f"{WARMUP_PREFIX}{i % 50}".encode())
            if i % 100 == 99:
                producer.flush(10)
        producer.flush(30)
        deadline = time.monotonic() + 120
        while reader.warmed < count:
            if time.monotonic() > deadline:
                raise PreflightError(
                    "kafka-streams",
                    self._streams.url if self._streams else "?",
                    f"only {reader.warmed} of {count} warm-up records came through the Streams app in 120 s",
                )
            time.sleep(0.1)
        self.host.facts["streams_warmup_records"] = count

    def send(self, event: Event, traceparent: str) -> asyncio.Future[Ack]:
        if event.workload == POINT_READ:
            return asyncio.ensure_future(self._point_read(event, traceparent))
        return self.host.produce(event, traceparent)

    async def _point_read(self, event: Event, traceparent: str) -> Ack:
        assert self._http is not None
        headers = {
            "traceparent": traceparent,
            "hopscope-event-id": event.event_id,
            "hopscope-workload": POINT_READ,
        }
        try:
            # With tracing on, the httpx span is current and its inject replaces `traceparent`:
            # the Streams app's server span becomes its child (the analysis folds it into the hop).
            with within_traceparent(traceparent, self.host.tracing):
                r = await self._http.get(f"/aggregates/{event.key}", headers=headers)
        except httpx.HTTPError as exc:
            return Ack("error", now_ns(), f"interactive query failed: {exc}")
        # 404 is a valid answer: the key has no aggregate yet.
        if r.status_code in (200, 404):
            return Ack("ok", now_ns())
        return Ack("error", now_ns(), f"interactive query answered {r.status_code}: {r.text[:120]}")

    def pids(self) -> set[int]:
        proc = self._streams.proc if self._streams is not None else None
        return {proc.pid} if proc is not None else set()

    def topics(self) -> list[str]:
        return [self.host.topics.events, self.host.topics.aggregate_out]

    def read_back(self) -> dict[str, Any]:
        if self._streams is None:
            return {}
        kafka = self.host.kafka
        internal = [
            t
            for t in kafka.admin().list_topics(timeout=10).topics
            if t.startswith(self._streams.settings.application_id) and t.endswith("-changelog")
        ]
        return {
            "streams": {
                "application_id": self._streams.settings.application_id,
                "changelog_topics": [kafka.topic_facts(t) for t in internal],
                # As the app's Kafka clients logged them at start (read back, not our intent).
                "logged_configs": logged_configs(self._streams.log),
            }
        }

    def stop(self) -> None:
        if self._streams is not None:
            self._streams.stop()

    def owned_topics(self, admin: Any) -> list[str]:
        if self._streams is None:
            return []
        app_id = self._streams.settings.application_id
        return [t for t in admin.list_topics(timeout=10).topics if t.startswith(app_id)]

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
