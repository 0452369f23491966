"""One workload on the Kafka stack, behind `KafkaDriver` (one module per workload).

The driver owns what every workload shares — the service clients, the common preflight
checks, the run's topics and producer, the glue processes and subscriber threads, receipts,
teardown and the manifest — and hands the workload's own steps to its `Pipeline`:
`write_notify.py`, `fanout.py`, `aggregate.py`, `ingest.py`. `Host` is what a pipeline may
use of the driver.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any, ClassVar, Protocol

from hopscope.deploy.base import Context

from ..driver import Ack, Event, RunContext
from ..workload import Workload
from .common import Topics
from .tuning import KafkaTuning

#: Partitions of the run's events topic (and of the aggregate's output topic).
EVENT_PARTITIONS = 3


class Host(Protocol):
    """What a pipeline uses of `KafkaDriver` (the common part of the stack)."""

    ctx: Context
    run: RunContext
    workload: Workload
    tracing: bool
    otlp_http: str
    #: the driver's options for pipelines (`iq_port`: the Streams app's interactive queries)
    options: dict[str, Any]
    #: the run's latency settings (the profile's, or the defaults): every client takes them here
    tuning: KafkaTuning
    tag: str
    topics: Topics
    kafka: Any  # hopscope.deploy.services.kafka.Kafka
    producer: Any  # the run's traced confluent-kafka Producer (workloads that produce)
    loop: asyncio.AbstractEventLoop
    log_dir: Path
    tmp: Path
    facts: dict[str, Any]

    def connect(self) -> Any: ...
    def dsn(self) -> str: ...
    def pipeline_dsn(self) -> str: ...
    def grant_pipeline(self, conn: Any, table: str) -> None: ...
    def redis_url(self) -> str: ...
    def provider(self, service: str) -> Any: ...
    def client_provider(self) -> Any: ...
    def ensure_topic(self, name: str, partitions: int) -> None: ...
    def spawn(self, role: str, **cfg: Any) -> None: ...
    def subscriber(self, name: str, url: str, channel: str, tracer: Any) -> None: ...
    def add_receiver(self, receiver: Any) -> None: ...
    def report(self, event_id: str, subscriber: str, received_ns: int) -> None: ...
    def report_consumer(self, client: str, settings: dict[str, Any]) -> None: ...
    def produce(self, event: Event, traceparent: str) -> asyncio.Future[Ack]: ...
    def payload_of(self, event: Event, sent_ns: int) -> Any: ...


class Pipeline:
    """A workload's own steps; every hook has a do-nothing default."""

    #: the workload this pipeline runs
    workload: ClassVar[str]
    #: True: the driver creates the run's events topic and the producer before `setup`
    produces_events: ClassVar[bool] = True

    def __init__(self, host: Host) -> None:
        self.host = host

    def preflight(self) -> None:
        """Checks of this workload's own needs (the driver checked Kafka, Redis, Postgres)."""

    def setup(self) -> None:
        """Create what the workload needs and start its processes (in a worker thread)."""

    def send(self, event: Event, traceparent: str) -> asyncio.Future[Ack]:
        """Start sending one event (the default: produce it to the run's events topic)."""
        return self.host.produce(event, traceparent)

    def topics(self) -> list[str]:
        """The topics whose settings the manifest reads back."""
        return [self.host.topics.events]

    def read_back(self) -> dict[str, Any]:
        """Manifest sections of this workload's own services (after the common ones)."""
        return {}

    def backlog(self) -> dict[str, float]:
        """This workload's share of the stack's backlog (`Driver.backlog`): name → pending."""
        return {}

    def pids(self) -> set[int]:
        """Processes this pipeline started itself (beyond the driver's glue processes)."""
        return set()

    def stop(self) -> None:
        """Stop what `setup` started beyond glue processes and receivers (after the processes)."""

    def after_stop(self) -> None:
        """Once everything is stopped and the spans are flushed."""

    def owned_topics(self, admin: Any) -> list[str]:
        """Topics the run made indirectly (deleted at the end), found with the AdminClient."""
        return []

    async def aclose(self) -> None:
        """Close asynchronous clients (on the event loop, after the synchronous teardown)."""


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0
