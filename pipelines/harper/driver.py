"""The Harper stack driver: the four workloads on the 3-node cluster, traced through every hop.

| workload | send (node 1) | delivery |
|---|---|---|
| write_notify | REST PUT /Notify/<id>, `X-Replicate-To: *;confirm=1` | MQTT `Notify/#` on every node (sub-i on node i+1) |
| fanout | MQTT 5 publish QoS 1 to Fanout/<region>/<category>/<id> | MQTT topic filters, subscribers spread over the nodes |
| aggregate | REST PUT /Reading/<id> (component updates Aggregate/<key>), confirmed | MQTT `Aggregate/#` on node 2; point reads GET /Aggregate/<key> on node 2 |
| ingest | REST POST /Ingest/ (confirmed) | the confirmed write is the sink's receipt |

The client sends `traceparent` as an HTTP header (or inside the MQTT payload:
Harper drops MQTT 5 user properties). The component continues the trace and
stores the traceparent of its commit span in the record, which is what
subscribers on any node receive; they continue the trace from there and report
the receipt to the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiomqtt
import httpx
import orjson
from opentelemetry.trace import SpanKind
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from hopscope.deploy.harper_client import CONFIRM_HEADER, HarperClient, confirm_value
from hopscope.instrumentation.carriers import TraceparentError, parse_traceparent
from hopscope.instrumentation.hops import start_hop_span
from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing
from hopscope.pipelines.driver import Ack, Driver, Event, PreflightError, RunContext
from hopscope.pipelines.workload import POINT_READ, Workload

from . import topics
from .component_deploy import READY_PATH

SUPPORTED = ("write_notify", "fanout", "aggregate", "ingest")
#: Hops that are built from timestamps instead of a hook (none at present: see README.md).
DERIVED_HOPS: dict[str, list[str]] = {w: [] for w in SUPPORTED}


@dataclass
class HarperDriverConfig:
    #: replicas a write waits for (Kafka side: acks=all with min.insync.replicas=2 = 2 copies)
    confirm_replicas: int = 1
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
class _Sub:
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


@dataclass
class _Counters:
    foreign_messages: int = 0  # other runs' records (tables are shared): ignored, counted
    bad_messages: int = 0
    bad_examples: list[str] = field(default_factory=list)


#: the component's per-run span account (pipelines/harper/component/resources.js)
TELEMETRY = "HopscopeTelemetry"
#: counters of the account that mean spans or commits went missing
_LOSS_COUNTERS = ("spans_failed", "spans_pending", "commits_open", "commits_unwatched")


def summarize_component_telemetry(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over nodes and one line per problem (empty when every span reached the collector)."""
    totals = {
        k: sum(int(n.get(k) or 0) for n in nodes) for k in ("spans_ended", "spans_exported", *_LOSS_COUNTERS)
    }
    problems = [f"{n['node']}: telemetry not readable: {n['error']}" for n in nodes if "error" in n]
    for n in nodes:
        if "error" in n:
            continue
        lost = {k: int(n.get(k) or 0) for k in _LOSS_COUNTERS if int(n.get(k) or 0) > 0}
        if lost:
            detail = ", ".join(f"{k}={v}" for k, v in lost.items())
            error = f" (last export error: {n['last_error']})" if n.get("last_error") else ""
            problems.append(f"{n['node']}: {detail}{error}")
        if n.get("worker_restarted_during_run"):
            problems.append(
                f"{n['node']}: the Harper worker restarted during the run; its queued spans are lost"
            )
    return {"nodes": nodes, **totals, "problems": problems}


def _harper_client() -> HarperClient:
    from hopscope.deploy.base import Context
    from hopscope.deploy.config import load_config
    from hopscope.deploy.services.harper import Harper

    return Harper(Context(load_config())).client()


def _collector_endpoint() -> str:
    from hopscope.deploy.config import load_config

    return load_config().collector.otlp_grpc_endpoint


class HarperDriver(Driver):
    stack = "harper"

    def __init__(
        self,
        client: HarperClient | None = None,
        config: HarperDriverConfig | None = None,
        otlp_endpoint: str | None = None,
        tracing: bool = True,
        **options: Any,
    ) -> None:
        self.config = config or HarperDriverConfig(**options)
        self.client = client or _harper_client()
        self.otlp_endpoint = otlp_endpoint
        #: off: no traceparent goes out, so the component and the subscribers make no spans
        self.tracing = tracing
        self.workload: Workload | None = None
        self._run: RunContext | None = None
        self._subs: list[_Sub] = []
        self._http: httpx.AsyncClient | None = None
        self._publisher: aiomqtt.Client | None = None
        self._provider: Any = None
        self._tracer: Any = None
        self._expected = 0
        self._received = 0
        self._last_receipt = 0.0
        self._counters = _Counters()
        self._fairness: dict[str, Any] = {}
        self._setup_wall_ms = 0.0
        self._component_telemetry: dict[str, Any] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def preflight(self, workload: Workload) -> None:
        if workload.name not in SUPPORTED:
            raise PreflightError("harper", "-", f"workload {workload.name!r} is not one of {SUPPORTED}")
        if len(self.client.nodes) < 2:
            raise PreflightError("harper", self.client.nodes[0].rest_url, "replication needs >= 2 nodes")
        if self.config.confirm_replicas > len(self.client.nodes) - 1:
            raise PreflightError(
                "harper", "-", f"confirm_replicas={self.config.confirm_replicas} > replicas available"
            )
        with self.client.http(timeout=5) as http:
            for node in self.client.nodes:
                url = f"{node.rest_url}/{READY_PATH}"
                try:
                    status = http.get(url).status_code
                except httpx.HTTPError as exc:
                    raise PreflightError("harper", url, str(exc)) from exc
                if status >= 404:
                    raise PreflightError(
                        "harper",
                        url,
                        f"HTTP {status}: the hopscope component is not deployed (run `hopscope up`)",
                    )
        self._fairness = self._read_fairness()

    def _read_fairness(self) -> dict[str, Any]:
        nodes = []
        for node in self.client.nodes:
            conf = self.client.operation(node, {"operation": "get_configuration"})
            repl = conf.get("replication", {}) if isinstance(conf, dict) else {}
            nodes.append(
                {
                    "name": node.name,
                    "replication": {
                        k: repl.get(k) for k in ("hostname", "databases", "routes", "securePort", "port")
                    },
                    "threads": (conf.get("threads") or {}).get("count"),
                    "storage": {
                        k: (conf.get("storage") or {}).get(k)
                        for k in ("writeAsync", "compression", "caching")
                    },
                    "peers_connected": self.client.peers(node),
                }
            )
        return {"nodes": nodes}

    async def setup(self, workload: Workload, run: RunContext) -> None:
        self.workload, self._run = workload, run
        self._setup_wall_ms = time.time() * 1000
        cfg = self.config
        self._provider = setup_tracing(
            "harper.subscribers",
            "harper",
            run.run_id,
            endpoint=self.otlp_endpoint or _collector_endpoint(),
            enabled=self.tracing,
        )
        self._tracer = self._provider.get_tracer("hopscope.pipelines.harper")
        limits = httpx.Limits(
            max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections
        )
        self._http = httpx.AsyncClient(
            headers=self.client.auth_headers(), timeout=cfg.request_timeout_s, limits=limits
        )
        self._subs = self._plan_subscribers(workload)
        for sub in self._subs:
            sub.client = self._mqtt(sub.node, f"{run.run_id}-{sub.name}", max_queued_incoming_messages=0)
            await sub.client.__aenter__()
            # retainHandling=2: a table subscription would first replay every stored record
            for flt in sub.filters:
                await sub.client.subscribe(
                    flt, options=SubscribeOptions(qos=cfg.mqtt_qos, retainHandling=2), timeout=10
                )
            sub.task = asyncio.create_task(self._consume(sub))
        if workload.name == "fanout":
            self._publisher = self._mqtt(
                cfg.write_node, f"{run.run_id}-publisher", max_inflight_messages=1000
            )
            # QoS 1 publishes in flight are the open loop working as meant, not a concern to log
            self._publisher.pending_calls_threshold = max(1000, self.config.max_connections)
            await self._publisher.__aenter__()
        await asyncio.sleep(0.5)  # subscriptions reach the other nodes' routing

    def _mqtt(self, node_index: int, identifier: str, **options: Any) -> aiomqtt.Client:
        """An MQTT 5 client of one node, with the cluster's credentials (not yet connected)."""
        node = self.client.node(node_index)
        user, password = self.client.auth()
        return aiomqtt.Client(
            node.mqtt_host,
            node.mqtt_port,
            username=user,
            password=password,
            identifier=identifier[:64],
            protocol=aiomqtt.ProtocolVersion.V5,
            **options,
        )

    def _plan_subscribers(self, workload: Workload) -> list[_Sub]:
        n = len(self.client.nodes)
        if workload.name == "ingest":
            return []  # the sink's receipt is the confirmed write itself
        if workload.name == "aggregate":
            return [
                _Sub(s.name, self.config.read_node, [f"{topics.AGGREGATE}/#"], "reader.receive")
                for s in workload.subscribers
            ]
        out = []
        for i, spec in enumerate(workload.subscribers):
            node = i % n + 1  # sub-0 on the writer's node, the others on replicas
            filters = (
                [f"{topics.NOTIFY}/#"]
                if workload.name == "write_notify"
                else topics.fanout_filters(workload, spec)
            )
            out.append(_Sub(spec.name, node, filters, "subscriber.receive"))
        return out

    async def drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._received >= self._expected:
                return
            if (
                self._last_receipt
                and time.monotonic() - self._last_receipt > max(self.config.quiet_s, 0.1) * 5
            ):
                return
            await asyncio.sleep(0.05)

    async def teardown(self) -> None:
        for sub in self._subs:
            if sub.task is not None:
                sub.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sub.task
            if sub.client is not None:
                with contextlib.suppress(Exception):
                    await sub.client.__aexit__(None, None, None)
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.__aexit__(None, None, None)
        if self._http is not None:
            if self.tracing and self._run is not None:
                self._component_telemetry = await self._read_component_telemetry()
            await self._http.aclose()
        if self._provider is not None:
            shutdown_tracing(self._provider)

    async def _read_component_telemetry(self) -> dict[str, Any]:
        """Flush the component's queued spans on every node and keep its own account of them.

        The component counts the run's spans as they end, are exported or fail, and the commits
        Harper has not resolved; a worker that started after `setup` lost what it had queued.
        """
        assert self._http is not None and self._run is not None
        nodes: list[dict[str, Any]] = []
        for node in self.client.nodes:
            url = f"{node.rest_url}/{TELEMETRY}/{self._run.run_id}"
            try:
                resp = await self._http.post(url, timeout=30.0)
                resp.raise_for_status()
                entry = dict(resp.json())
            except (httpx.HTTPError, ValueError) as exc:
                nodes.append({"node": node.name, "error": f"POST {url}: {type(exc).__name__}: {exc}"})
                continue
            entry["node"] = node.name
            entry["worker_restarted_during_run"] = entry.get("worker_started_ms", 0) > self._setup_wall_ms
            nodes.append(entry)
        return summarize_component_telemetry(nodes)

    # --- sending --------------------------------------------------------------------------
    def send(self, event: Event) -> asyncio.Future[Ack]:
        assert self.workload is not None
        name = self.workload.name
        if event.workload == POINT_READ:
            coro = self._point_read(event)
        elif name == "fanout":
            coro = self._publish(event)
        elif name == "write_notify":
            coro = self._put(event, topics.NOTIFY)
        elif name == "aggregate":
            coro = self._put(event, topics.READING)
        else:
            coro = self._post_ingest(event)
        return asyncio.ensure_future(coro)

    def _body(self, event: Event) -> dict[str, Any]:
        assert self._run is not None
        return {
            "key": event.key,
            "runId": self._run.run_id,
            "workload": event.workload,
            "payload": event.payload.decode("utf-8", "replace"),
        }

    def _write_headers(self, event: Event) -> dict[str, str]:
        headers = {"content-type": "application/json", **event.carrier}
        if self.config.confirm_replicas > 0:
            headers[CONFIRM_HEADER] = confirm_value(self.config.confirm_replicas)
        return headers

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[Ack, httpx.Response | None]:
        assert self._http is not None and self._run is not None
        try:
            resp = await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            return Ack(
                "timeout", None, f"{method} {url}: no answer within {self.config.request_timeout_s}s"
            ), None
        except httpx.HTTPError as exc:
            return Ack("error", None, f"{method} {url}: {type(exc).__name__}: {exc}"), None
        now = self._run.now_ns()
        if resp.status_code >= 400:
            return Ack("error", now, f"{method} {url}: HTTP {resp.status_code}: {resp.text[:200]}"), resp
        return Ack("ok", now), resp

    async def _put(self, event: Event, resource: str) -> Ack:
        node = self.client.node(self.config.write_node)
        self._expect(event)
        ack, _ = await self._request(
            "PUT",
            f"{node.rest_url}/{resource}/{event.event_id}",
            content=orjson.dumps(self._body(event)),
            headers=self._write_headers(event),
        )
        return ack

    async def _post_ingest(self, event: Event) -> Ack:
        assert self._run is not None
        node = self.client.node(self.config.write_node)
        ack, resp = await self._request(
            "POST",
            f"{node.rest_url}/{topics.INGEST}/",
            content=orjson.dumps({"id": event.event_id, **self._body(event)}),
            headers=self._write_headers(event),
        )
        if ack.status == "ok":
            acked = ack.acked_ns or self._run.now_ns()
            # the component names its last hop (the confirmation) in a W3C traceresponse header
            parent = (resp.headers.get("traceresponse") if resp is not None else None) or event.traceparent
            for sub in event.expected_subscribers:  # the confirmed, replicated write is the receipt
                self._record_sink(event, sub, acked, parent)
        return ack

    def _record_sink(self, event: Event, subscriber: str, acked_ns: int, parent: str | None) -> None:
        """The sink's receipt (the confirmed write came back), as a span the analysis can pair."""
        assert self._run is not None
        if parent and self._tracer is not None:
            span = start_hop_span(
                self._tracer,
                "sink.receive",
                event_id=event.event_id,
                workload=event.workload,
                kind=SpanKind.CONSUMER,
                parent=parse_traceparent(parent, f"event {event.event_id}: traceresponse"),
                subscriber=subscriber,
                start_time=acked_ns,
                attributes={"harper.confirmed_replicas": self.config.confirm_replicas},
            )
            self._run.receipt(event.event_id, subscriber, acked_ns)
            span.end(end_time=max(self._run.now_ns(), acked_ns + 1))
            return
        self._run.receipt(event.event_id, subscriber, acked_ns)

    async def _point_read(self, event: Event) -> Ack:
        assert self._run is not None
        node = self.client.node(self.config.read_node)
        headers = {**event.carrier, "x-hopscope-run": self._run.run_id, "x-hopscope-event": event.event_id}
        ack, resp = await self._request(
            "GET", f"{node.rest_url}/{topics.AGGREGATE}/{event.key}", headers=headers
        )
        if resp is not None and resp.status_code == 404:
            # a key not aggregated yet is an answer, not a failure of the read path
            return Ack("ok", ack.acked_ns, "404: no aggregate yet")
        return ack

    async def _publish(self, event: Event) -> Ack:
        assert self._publisher is not None and self._run is not None and self.workload is not None
        self._expect(event)
        topic = topics.fanout_topic(self.workload, event.fields, event.event_id)
        message = {
            "eventId": event.event_id,
            "runId": self._run.run_id,
            "workload": event.workload,
            "traceparent": event.traceparent,
            "payload": event.payload.decode("utf-8", "replace"),
        }
        props = Properties(PacketTypes.PUBLISH)
        if event.traceparent:  # Harper drops user properties; sent anyway so the loss stays visible
            props.UserProperty = ("traceparent", event.traceparent)
        try:
            await self._publisher.publish(
                topic,
                orjson.dumps(message),
                qos=self.config.mqtt_qos,
                properties=props,
                timeout=self.config.request_timeout_s,
            )
        except aiomqtt.MqttError as exc:
            status = "timeout" if "timed out" in str(exc).lower() else "error"
            return Ack(status, None, f"MQTT publish {topic}: {exc}")  # type: ignore[arg-type]
        return Ack("ok", self._run.now_ns())

    def _expect(self, event: Event) -> None:
        self._expected += len(event.expected_subscribers)

    # --- receiving ------------------------------------------------------------------------
    async def _consume(self, sub: _Sub) -> None:
        assert sub.client is not None
        async for message in sub.client.messages:
            self._on_message(sub, message)

    def _on_message(self, sub: _Sub, message: aiomqtt.Message) -> None:
        assert self._run is not None
        received = self._run.now_ns()
        where = f"MQTT {message.topic} at {sub.name}"
        try:
            record = orjson.loads(message.payload)  # type: ignore[arg-type]
            if not isinstance(record, dict):
                raise ValueError("payload is not a JSON object")
            if record.get("runId") != self._run.run_id:
                self._counters.foreign_messages += 1
                return
            if sub.hop == "reader.receive":
                # an aggregate state covers every event folded in since the reader's last one
                items = [i for i in record.get("recent") or [] if isinstance(i, dict)]
                # the key's row outlives runs: its recent list may still name earlier runs' events
                own = f"{self._run.run_id}-"
                items = [i for i in items if str(i.get("eventId", "")).startswith(own)]
                deliveries = [(i.get("eventId"), i.get("traceparent")) for i in items]
            else:
                deliveries = [(record.get("eventId", record.get("id")), record.get("traceparent"))]
            parsed = []
            for event_id, tp in deliveries:
                if not isinstance(event_id, str):
                    raise ValueError(f"no event id in {sorted(record)}")
                # no traceparent = an untraced run; a malformed one is an error
                parsed.append(
                    (event_id, None if tp is None else parse_traceparent(tp, f"{where}: record field"))
                )
            if not parsed:
                raise ValueError(f"no event in {sorted(record)}")
        except (ValueError, TraceparentError) as exc:
            self._counters.bad_messages += 1
            if len(self._counters.bad_examples) < 20:
                self._counters.bad_examples.append(f"{where}: {exc}")
            return
        node = self.client.node(sub.node)
        workload = str(record.get("workload") or (self.workload.name if self.workload else ""))
        for event_id, parent in parsed:
            if sub.hop == "reader.receive":
                if event_id in sub.seen:
                    sub.already_seen += 1  # the same event again in a later aggregate state
                    continue
                sub.seen.add(event_id)
            if parent is None:
                self._run.receipt(event_id, sub.name, received)
                sub.received += 1
                self._received += 1
                continue
            span = start_hop_span(
                self._tracer,
                sub.hop,
                event_id=event_id,
                workload=workload,
                kind=SpanKind.CONSUMER,
                parent=parent,
                subscriber=sub.name,
                start_time=received,
                attributes={
                    "messaging.system": "mqtt",
                    "messaging.destination.name": str(message.topic),
                    "messaging.destination.template": topics.destination_template(str(message.topic)),
                    "harper.node": node.name,
                    "hopscope.subscriber_locality": "same-node"
                    if sub.node == self.config.write_node
                    else "other-node",
                },
            )
            self._run.receipt(event_id, sub.name, received)
            sub.received += 1
            self._received += 1
            span.end(end_time=self._run.now_ns())
        self._last_receipt = time.monotonic()

    # --- manifest -------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        replicas = self.config.confirm_replicas
        name = self.workload.name if self.workload else None
        return {
            "stack": self.stack,
            "simulation": False,
            # off: no traceparent is sent, so neither the component nor the subscribers make spans
            "tracing": self.tracing,
            "config": asdict(self.config),
            "write_confirmation": {
                "replicas": replicas,
                "rest_header": {CONFIRM_HEADER: confirm_value(replicas)} if replicas else None,
                "applies_to": "REST writes (write_notify, aggregate, ingest); MQTT publish has no confirmation",
            },
            "mqtt": {"protocol": "5", "qos": self.config.mqtt_qos, "retain_handling": 2, "retain": False},
            "subscribers": [
                {
                    "name": s.name,
                    "node": self.client.node(s.node).name,
                    "same_node_as_writer": s.node == self.config.write_node,
                    "filters": s.filters,
                    "received": s.received,
                    "repeated_in_later_aggregate_states": s.already_seen,
                }
                for s in self._subs
            ],
            "derived_hops": DERIVED_HOPS.get(name or "", []),
            "trace_carrier": "HTTP header traceparent -> record field traceparent (MQTT payload for fanout)",
            "messages_of_other_runs": self._counters.foreign_messages,
            "unusable_messages": self._counters.bad_messages,
            "unusable_examples": self._counters.bad_examples,
            "cluster": self._fairness,
            "component_telemetry": self._component_telemetry,
        }
