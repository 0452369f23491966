"""One workload on the Harper stack, behind `HarperDriver` (one module per workload).

The driver owns what every workload shares — the cluster client, the preflight (which also
deploys the stack's component), tracing, the HTTP client, the MQTT subscribers it is given,
receipts, drain, teardown, the component's span account and the manifest — and hands the
workload's own steps to its `Pipeline`: `write_notify.py`, `fanout.py`, `aggregate.py`,
`ingest.py`. `Host` is what a pipeline may use of the driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import aiomqtt
import httpx

from hopscope.deploy.harper_client import HarperClient

from ..driver import Ack, Event, RunContext
from ..workload import Workload

#: The hop of a subscriber's receive span (and of the aggregate reader's).
SUBSCRIBER_HOP = "subscriber.receive"
READER_HOP = "reader.receive"


@dataclass
class HarperDriverConfig:
    #: replicas a write waits for (Kafka side: acks=all with min.insync.replicas=2 = 2 copies);
    #: None: the deploy config's `[harper] confirm_replicas`, the one source the health check,
    #: the services' read-back and the writes share
    confirm_replicas: int | None = None
    #: our own bound on a request: a confirmed write hangs while every replica is down
    request_timeout_s: float = 10.0
    mqtt_qos: int = 1
    #: node (1-based) that receives every write / publish
    write_node: int = 1
    #: node that serves point reads and the aggregate reader (a replica, not the writer)
    read_node: int = 2
    #: drain ends early once no receipt came for this long after all were expected
    quiet_s: float = 2.0
    max_connections: int = 64


@dataclass
class Sub:
    """One MQTT subscriber: its node, topic filters and receive hop."""

    name: str
    node: int
    filters: list[str]
    hop: str
    client: aiomqtt.Client | None = None
    task: asyncio.Task[None] | None = None
    received: int = 0
    #: aggregate reader: events already received (a later state repeats the last few)
    seen: set[str] = field(default_factory=set)
    already_seen: int = 0


class Host(Protocol):
    """What a pipeline uses of `HarperDriver` (the common part of the stack)."""

    config: HarperDriverConfig
    client: HarperClient
    tracing: bool

    @property
    def run(self) -> RunContext: ...
    def mqtt(self, node_index: int, identifier: str, **options: Any) -> aiomqtt.Client: ...
    def body(self, event: Event) -> dict[str, Any]: ...
    def write_headers(self, event: Event) -> dict[str, str]: ...
    async def request(self, method: str, url: str, **kwargs: Any) -> tuple[Ack, httpx.Response | None]: ...
    def expect(self, event: Event) -> None: ...
    def record_sink(self, event: Event, subscriber: str, acked_ns: int, parent: str | None) -> None: ...


class Pipeline:
    """A workload's own steps; every hook but `send` has a default."""

    workload: ClassVar[str]

    def __init__(self, host: Host) -> None:
        self.host = host

    def subscribers(self, workload: Workload) -> list[Sub]:
        """The MQTT subscribers the driver connects before the load (none by default)."""
        return []

    async def setup(self, workload: Workload) -> None:
        """After the subscribers are connected: the workload's own clients."""

    def send(self, event: Event) -> Awaitable[Ack]:
        raise NotImplementedError

    def deliveries(self, sub: Sub, record: dict[str, Any]) -> list[tuple[Any, Any]]:
        """(event id, traceparent) of each event one received record stands for."""
        return [(record.get("eventId", record.get("id")), record.get("traceparent"))]

    def seen_before(self, sub: Sub, event_id: str) -> bool:
        """True for an event this subscriber already received (then no second receipt)."""
        return False

    async def aclose(self) -> None:
        """Close the workload's own clients (before the driver closes its HTTP client)."""


def fanned_subscribers(workload: Workload, nodes: int, filters: Any) -> list[Sub]:
    """One subscriber per workload subscriber, spread over the replicas (nodes 2..n; node 1
    takes the writes): a replica notifies once it holds the write, so every notification
    follows two durable copies, as Kafka's acks=all with min.insync.replicas=2 (D21).
    `filters(spec)` gives each one's MQTT topic filters."""
    replicas = max(nodes - 1, 1)
    return [
        Sub(spec.name, i % replicas + (2 if nodes > 1 else 1), filters(spec), SUBSCRIBER_HOP)
        for i, spec in enumerate(workload.subscribers)
    ]
