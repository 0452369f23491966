"""The Harper stack driver: the 3-node cluster for the load generator — what every workload shares.

| workload | send (node 1) | delivery | module |
|---|---|---|---|
| write_notify | REST PUT /Notify/<id>, `X-Replicate-To: *;confirm=1` | MQTT `Notify/#` on every node (sub-i on node i+1) | `write_notify.py` |
| fanout | MQTT 5 publish QoS 1 to Fanout/<region>/<category>/<id> | MQTT topic filters, subscribers spread over the nodes | `fanout.py` |
| aggregate | REST PUT /Reading/<id> (component updates Aggregate/<key>), confirmed | MQTT `Aggregate/#` on node 2; point reads GET /Aggregate/<key> on node 2 | `aggregate.py` |
| ingest | REST POST /Ingest/ (confirmed) | the confirmed write is the sink's receipt | `ingest.py` |

The driver deploys the stack's component (`component_deploy.py`) in its preflight when some
node does not serve it, and keeps the clients, subscribers, receipts and the manifest; each
workload's own steps are its `Pipeline` (`pipeline.py`).

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
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import aiomqtt
import httpx
import orjson
from opentelemetry.trace import SpanKind
from paho.mqtt.subscribeoptions import SubscribeOptions

from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.harper_client import CONFIRM_HEADER, HarperClient, HarperError, confirm_value
from hopscope.deploy.services.harper import Harper
from hopscope.instrumentation.carriers import TraceparentError, parse_traceparent
from hopscope.instrumentation.edges import Edge, messaging_from
from hopscope.instrumentation.hops import LeafSpans
from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing
from hopscope.pipelines.driver import Ack, Driver, Event, PreflightError, RunContext
from hopscope.pipelines.workload import POINT_READ, Workload

from . import topics
from .aggregate import Aggregate
from .component_deploy import READY_PATH, ensure_deployed
from .fanout import Fanout
from .ingest import Ingest
from .pipeline import HarperDriverConfig, Pipeline, Sub
from .write_notify import WriteNotify

#: workload → its pipeline on this stack
PIPELINES: dict[str, type[Pipeline]] = {p.workload: p for p in (WriteNotify, Fanout, Aggregate, Ingest)}
SUPPORTED = tuple(PIPELINES)
#: Hops that are built from timestamps instead of a hook (none at present: see README.md).
DERIVED_HOPS: dict[str, list[str]] = {w: [] for w in SUPPORTED}
__all__ = ["HarperDriver", "HarperDriverConfig", "summarize_component_telemetry"]


@dataclass
class _Counters:
    foreign_messages: int = 0  # other runs' records (tables are shared): ignored, counted
    bad_messages: int = 0
    bad_examples: list[str] = field(default_factory=list)


#: the component's answer to every REST write: the replicatedConfirmation Harper applied to it
APPLIED_HEADER = "x-hopscope-replicated-confirmation"
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


#: an idle cluster here shows a marker write on every node after 80-110 ms (unconfirmed writes
#: are batched); above this a queue of earlier writes is still draining
REPLICATION_IDLE_MS = 500.0


def _collector_endpoint() -> str:
    return load_config().collector.otlp_grpc_endpoint


def applied_confirmation(counts: Counter[str]) -> dict[str, Any]:
    """The fairness read-back of the writes' confirmation: `applied` is the one value every
    write reported (an int), or `mixed: …` with the counts, or absent when no REST write ran
    (a run with no write: point reads only)."""
    if not counts:
        return {}
    out: dict[str, Any] = {"applied_counts": dict(counts)}
    if len(counts) == 1:
        (value,) = counts
        out["applied"] = int(value) if value.isdigit() else value
    else:
        out["applied"] = "mixed: " + ", ".join(f"{v} ×{n}" for v, n in counts.most_common())
    return out


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
        if self.config.confirm_replicas is None:
            self.config = replace(self.config, confirm_replicas=load_config().harper.confirm_replicas)
        #: the replicatedConfirmation the component reports it applied, per REST write
        self._applied: Counter[str] = Counter()
        #: the deployed cluster (None with a client of the caller's: then nothing is deployed)
        self.service = None if client is not None else Harper(Context(load_config()))
        self.client = client or self.service.client()
        self.otlp_endpoint = otlp_endpoint
        #: off: no traceparent goes out, so the component and the subscribers make no spans
        self.tracing = tracing
        self.workload: Workload | None = None
        self.pipeline: Pipeline | None = None
        self._run: RunContext | None = None
        self._subs: list[Sub] = []
        self._http: httpx.AsyncClient | None = None
        self._provider: Any = None
        self._tracer: Any = None
        self._leaves: LeafSpans | None = None
        self._expected = 0
        self._received = 0
        self._last_receipt = 0.0
        self._counters = _Counters()
        self._fairness: dict[str, Any] = {}
        self._setup_wall_ms = 0.0
        self._component_telemetry: dict[str, Any] | None = None

    def node_service(self, which: int) -> str:
        """The `service.name` the component's spans carry on that node (resources.js)."""
        return f"harper.{self.client.node(which).name}"

    def root_edge(self, workload: str) -> Edge | None:
        # The component's server spans do not know their caller: the load generator names it.
        if workload == POINT_READ:
            return Edge(server=self.node_service(self.config.read_node))
        return Edge(server=self.node_service(self.config.write_node))  # a REST write

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
        if self.service is not None:
            # The stack's component, deployed by the stack (idempotent; cheap when unchanged).
            try:
                ensure_deployed(self.service)
            except HarperError as exc:
                raise PreflightError("harper", self.client.nodes[0].rest_url, str(exc)) from exc
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
                        f"HTTP {status}: the hopscope component is not deployed",
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
        self.pipeline = PIPELINES[workload.name](self)
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
        self._leaves = LeafSpans(self._provider, "hopscope.pipelines.harper")
        limits = httpx.Limits(
            max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections
        )
        self._http = httpx.AsyncClient(
            headers=self.client.auth_headers(), timeout=cfg.request_timeout_s, limits=limits
        )
        self._subs = self.pipeline.subscribers(workload)
        for sub in self._subs:
            sub.client = self.mqtt(sub.node, f"{run.run_id}-{sub.name}", max_queued_incoming_messages=0)
            await sub.client.__aenter__()
            # retainHandling=2: a table subscription would first replay every stored record
            for flt in sub.filters:
                await sub.client.subscribe(
                    flt, options=SubscribeOptions(qos=cfg.mqtt_qos, retainHandling=2), timeout=10
                )
            sub.task = asyncio.create_task(self._consume(sub))
        await self.pipeline.setup(workload)
        await asyncio.sleep(0.5)  # subscriptions reach the other nodes' routing

    async def backlog(self) -> dict[str, float]:
        return await asyncio.to_thread(self._backlog_sync)

    def _backlog_sync(self) -> dict[str, float]:
        try:
            peers = [ok for node in self.client.nodes for ok in self.client.peers(node).values()]
            out = {"replication sockets not connected": float(peers.count(False))}
            if self.service is not None:  # an injected client (tests) has no service to probe
                lag_ms = self.service.replication_lag_s(timeout=5.0) * 1000
                # Harper's cluster_status has no queue length (its back-pressure figure is the
                # last sample and stays put): a marker write waits behind any queued writes
                out["replication marker lag over 500 ms"] = lag_ms if lag_ms > REPLICATION_IDLE_MS else 0.0
            return out
        except (HarperError, httpx.HTTPError) as exc:
            # a node that cannot answer is not idle: counted, and the wait goes on (bounded)
            return {f"nodes not answering ({type(exc).__name__})": 1.0}

    @property
    def run(self) -> RunContext:
        assert self._run is not None
        return self._run

    def mqtt(self, node_index: int, identifier: str, **options: Any) -> aiomqtt.Client:
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
        if self.pipeline is not None:
            with contextlib.suppress(Exception):
                await self.pipeline.aclose()
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
        assert self.pipeline is not None
        return asyncio.ensure_future(self.pipeline.send(event))

    def body(self, event: Event) -> dict[str, Any]:
        assert self._run is not None
        return {
            "key": event.key,
            "runId": self._run.run_id,
            "workload": event.workload,
            "payload": event.payload.decode("utf-8", "replace"),
        }

    def write_headers(self, event: Event) -> dict[str, str]:
        headers = {"content-type": "application/json", **event.carrier}
        if self.config.confirm_replicas > 0:
            headers[CONFIRM_HEADER] = confirm_value(self.config.confirm_replicas)
        return headers

    async def request(self, method: str, url: str, **kwargs: Any) -> tuple[Ack, httpx.Response | None]:
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
        if method != "GET":
            self._applied[resp.headers.get(APPLIED_HEADER, "not reported")] += 1
        if resp.status_code >= 400:
            return Ack("error", now, f"{method} {url}: HTTP {resp.status_code}: {resp.text[:200]}"), resp
        return Ack("ok", now), resp

    def expect(self, event: Event) -> None:
        self._expected += len(event.expected_subscribers)

    def record_sink(self, event: Event, subscriber: str, acked_ns: int, parent: str | None) -> None:
        """The sink's receipt (the confirmed write came back), as a span the analysis can pair."""
        assert self._run is not None
        if parent and self._tracer is not None:
            self._leaves.end(
                "sink.receive",
                event_id=event.event_id,
                workload=event.workload,
                kind=SpanKind.CONSUMER,
                parent=parse_traceparent(parent, f"event {event.event_id}: traceresponse"),
                subscriber=subscriber,
                start_time=acked_ns,
                edge=Edge(client=self.node_service(self.config.write_node)),
                attributes={"harper.confirmed_replicas": self.config.confirm_replicas},
                end_time=max(self._run.now_ns(), acked_ns + 1),
            )
            self._run.receipt(event.event_id, subscriber, acked_ns)
            return
        self._run.receipt(event.event_id, subscriber, acked_ns)

    # --- receiving ------------------------------------------------------------------------
    async def _consume(self, sub: Sub) -> None:
        assert sub.client is not None
        async for message in sub.client.messages:
            self._on_message(sub, message)

    def _on_message(self, sub: Sub, message: aiomqtt.Message) -> None:
        assert self._run is not None and self.pipeline is not None
        received = self._run.now_ns()
        where = f"MQTT {message.topic} at {sub.name}"
        try:
            record = orjson.loads(message.payload)  # type: ignore[arg-type]
            if not isinstance(record, dict):
                raise ValueError("payload is not a JSON object")
            if record.get("runId") != self._run.run_id:
                self._counters.foreign_messages += 1
                return
            deliveries = self.pipeline.deliveries(sub, record)
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
            if self.pipeline.seen_before(sub, event_id):
                continue
            if parent is None:
                self._run.receipt(event_id, sub.name, received)
                sub.received += 1
                self._received += 1
                continue
            self._leaves.end(
                sub.hop,
                event_id=event_id,
                workload=workload,
                kind=SpanKind.CONSUMER,
                parent=parent,
                subscriber=sub.name,
                start_time=received,
                edge=messaging_from(self.node_service(sub.node)),
                attributes={
                    "messaging.system": "mqtt",
                    "messaging.destination.name": str(message.topic),
                    "messaging.destination.template": topics.destination_template(str(message.topic)),
                    "harper.node": node.name,
                    "hopscope.subscriber_locality": "same-node"
                    if sub.node == self.config.write_node
                    else "other-node",
                },
                end_time=self._run.now_ns(),
            )
            self._run.receipt(event_id, sub.name, received)
            sub.received += 1
            self._received += 1
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
                "applies_to": "every REST write (all four workloads)",
                # read back from the requests: what the nodes applied, per write
                **applied_confirmation(self._applied),
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
