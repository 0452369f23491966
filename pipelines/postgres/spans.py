"""The `postgres` stack's spans, built after the run from what the run recorded.

Nothing inside PostgreSQL can emit a span, so its hops are derived from timestamps it keeps
(`instrumentation/derived.py`), chained under the event's root span (`client.insert`):

| hop | from → to | source |
|---|---|---|
| `pg.trigger` / `pg.route` / `pg.aggregate` | the client's send → the trigger's `clock_timestamp()` | the row's `trig_us` (µs) |
| `pg.commit` | the trigger → the commit record's time | `pg_xact_commit_timestamp(xmin)` (µs, `track_commit_timestamp`) |
| `pg.replica.confirm` | the commit record → the commit returned to the client | the client's clock (ns): local WAL flush + the synchronous replica's flush confirmation |
| `subscriber.receive` / `reader.receive` | the notification handed over → handled | the LISTEN session's clock (CONSUMER, child of `pg.replica.confirm`, linked to the root) |

The gap between `pg.replica.confirm`'s end and a receipt is `wait:subscriber.receive`: the
notification's delivery (the listener's backend signalled after the commit, reading the queue,
the socket). A listener can be told a moment before the writer hears its commit returned: then
the receive starts inside `pg.replica.confirm` and the gap is 0. The commit times are read in
one query after the run, so the measured path pays nothing for them.

ingest: `pg.insert` (CLIENT, one per row, the batch's INSERT and synchronous commit, subscriber
`sink`); point reads: `pg.select` (CLIENT) under `client.point_read`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind

from hopscope.core.attributes import EDGE_MESSAGING
from hopscope.instrumentation.carriers import TraceparentError, parse_traceparent
from hopscope.instrumentation.derived import NS_PER_US, derived_span
from hopscope.instrumentation.edges import POSTGRES, Edge
from hopscope.instrumentation.hops import start_hop_span

FROM_POSTGRES = Edge(client=POSTGRES, type=EDGE_MESSAGING)
COMMIT_HOP = "pg.commit"
CONFIRM_HOP = "pg.replica.confirm"
SINK_HOP = "pg.insert"
SELECT_HOP = "pg.select"


@dataclass
class SpanRecords:
    """What the run's hot path records for its spans (appends only; thread-safe)."""

    writes: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # event → (tp, sent, ack)
    receipts: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    sinks: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    reads: list[tuple[str, str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, event_id: str, traceparent: str, sent_ns: int, ack_ns: int) -> None:
        self.writes[event_id] = (traceparent, sent_ns, ack_ns)

    def receipt(self, event_id: str, subscriber: str, traceparent: str, received: int, handled: int) -> None:
        with self.lock:
            self.receipts.append((event_id, subscriber, traceparent, received, handled))

    def sink(self, event_id: str, subscriber: str, traceparent: str, start: int, end: int) -> None:
        self.sinks.append((event_id, subscriber, traceparent, start, end))

    def point_read(self, event_id: str, traceparent: str, start: int, end: int) -> None:
        self.reads.append((event_id, traceparent, start, end))


def derived_chain(
    sent_ns: int, ack_ns: int, trig_us: int | None, commit_us: int | None
) -> list[tuple[int, int]] | None:
    """[start, end] of the trigger, commit and confirmation hops, each clamped to start where
    the previous ended (µs stamps are coarser than the client's ns); None without the stamps."""
    if trig_us is None or commit_us is None:
        return None
    trig = max(trig_us * NS_PER_US, sent_ns)
    commit = max(commit_us * NS_PER_US, trig)
    confirm = max(ack_ns, commit)
    return [(sent_ns, trig), (trig, commit), (commit, confirm)]


def build_spans(
    records: SpanRecords,
    commits: dict[str, tuple[int | None, int | None]],
    *,
    client: trace.Tracer,
    receiver: trace.Tracer,
    workload: str,
    trigger_hop: str | None,
    receive_hop: str,
) -> dict[str, Any]:
    """Create (and end) every span of the run; returns counts for the manifest."""
    counts = {"chains": 0, "without_commit_time": 0, "receipts": 0, "sinks": 0, "point_reads": 0, "errors": 0}
    confirm: dict[str, SpanContext] = {}
    roots: dict[str, SpanContext] = {}
    for event_id, (tp, sent, ack) in records.writes.items():
        try:
            root = parse_traceparent(tp, f"event {event_id}").span_context()
        except TraceparentError:
            counts["errors"] += 1
            continue
        roots[event_id] = root
        if trigger_hop is None:
            continue
        trig_us, commit_us = commits.get(event_id, (None, None))
        chain = derived_chain(sent, ack, trig_us, commit_us)
        if chain is None:
            counts["without_commit_time"] += 1
            continue
        parent: Any = root
        for hop, (start, end), source, precision in zip(
            (trigger_hop, COMMIT_HOP, CONFIRM_HOP),
            chain,
            (
                "clock_timestamp() in the trigger (µs)",
                "pg_xact_commit_timestamp (µs)",
                "commit returned to the client",
            ),
            (NS_PER_US, NS_PER_US, 1),
            strict=True,
        ):
            span = derived_span(
                client, hop, start, end, parent=parent, event_id=event_id, workload=workload,
                derived_from=source, precision_ns=precision,
            )  # fmt: skip
            parent = span
        confirm[event_id] = parent.get_span_context()
        counts["chains"] += 1
    for event_id, subscriber, tp, received, handled in list(records.receipts):
        try:
            root = roots.get(event_id) or parse_traceparent(tp, f"event {event_id}").span_context()
        except TraceparentError:
            counts["errors"] += 1
            continue
        start_hop_span(
            receiver,
            receive_hop,
            event_id=event_id,
            workload=workload,
            kind=SpanKind.CONSUMER,
            parent=confirm.get(event_id, root),
            links=[root],
            edge=FROM_POSTGRES,
            subscriber=subscriber,
            start_time=received,
            attributes={"messaging.system": "postgresql", "messaging.operation.type": "receive"},
        ).end(end_time=max(handled, received))
        counts["receipts"] += 1
    for event_id, subscriber, tp, start, end in records.sinks:
        try:
            root = parse_traceparent(tp, f"event {event_id}").span_context()
        except TraceparentError:
            counts["errors"] += 1
            continue
        start_hop_span(
            client, SINK_HOP, event_id=event_id, workload=workload, kind=SpanKind.CLIENT, parent=root,
            subscriber=subscriber, start_time=start, attributes={"db.system": "postgresql"},
        ).end(end_time=end)  # fmt: skip
        counts["sinks"] += 1
    for event_id, tp, start, end in records.reads:
        try:
            root = parse_traceparent(tp, f"event {event_id}").span_context()
        except TraceparentError:
            counts["errors"] += 1
            continue
        start_hop_span(
            client, SELECT_HOP, event_id=event_id, workload="point_read", kind=SpanKind.CLIENT, parent=root,
            start_time=start, attributes={"db.system": "postgresql"},
        ).end(end_time=end)  # fmt: skip
        counts["point_reads"] += 1
    return counts
