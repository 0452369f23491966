"""A synthetic *foreign* run: traces as an OpenTelemetry-instrumented shop would export them,
with no `hopscope.*` attribute, and the hop truth they were drawn from.

One event: `checkout` serves `POST /api/checkout` (HTTP server span, `http.route`), reads the
cart from a cache (`db.system.name=redis`, span name with a user id in it), reads the order
from PostgreSQL, and publishes to Kafka topic `orders` (PRODUCER, `messaging.*`). Two consumers,
`accounting` (with a PostgreSQL INSERT inside, which has the heavy tail) and `fraud-detection`,
each run in a trace of their own whose root CONSUMER span links to the producer span (the OTel
messaging conventions): fan-out to two deliveries per event.

`truth` holds, per delivery, the time each hop takes on its critical path under the default
hop names of `hopscope.analysis.foreign` — what the analysis must give back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hopscope.core.attributes import WAIT_PREFIX
from hopscope.core.rundir import SPANS_PARQUET
from hopscope.core.schema import SPAN_PARQUET_OPTIONS, SPAN_SCHEMA

MS = 1_000_000
#: root self-time between the root's children: the walk goes back to a child that ended
#: strictly before the next one started, so children never touch
GAP_NS = 50_000

ROOT = "checkout POST /api/checkout"
CACHE = "checkout redis GET cart:{n}"
DB = "checkout postgresql SELECT orders"
PUBLISH = "checkout publish orders"
ACCOUNTING = "accounting process orders"
INSERT = "accounting postgresql INSERT entries"
FRAUD = "fraud-detection process orders"
#: the hop the accounting INSERT's rare slow writes make the top of the p99 tail
TAIL_HOP = INSERT


@dataclass
class ForeignSynth:
    table: pa.Table  # SPAN_SCHEMA, no hopscope.* value anywhere
    #: one row per delivery: subscriber, then hop name → ns on its critical path
    truth: list[dict[str, object]]


def _lognormal_ns(rng: np.random.Generator, median_ms: float, sigma: float, n: int) -> np.ndarray:
    return np.round(rng.lognormal(np.log(median_ms * MS), sigma, n)).astype(np.int64)


def foreign_run(events: int = 2000, seed: int = 7) -> ForeignSynth:
    rng = np.random.default_rng(seed)
    root_lead = rng.integers(200_000, 400_000, events)
    cache = _lognormal_ns(rng, 0.3, 0.3, events)
    db = _lognormal_ns(rng, 2.0, 0.4, events)
    publish = _lognormal_ns(rng, 1.0, 0.3, events)
    lag_acc = _lognormal_ns(rng, 3.0, 0.5, events)
    lag_fraud = _lognormal_ns(rng, 4.0, 0.5, events)
    insert = _lognormal_ns(rng, 1.5, 0.3, events)
    slow = rng.random(events) < 0.03
    insert[slow] += rng.integers(40 * MS, 80 * MS, slow.sum())
    fraud = _lognormal_ns(rng, 5.0, 0.3, events)
    acc_lead, acc_tail = 200_000, 300_000
    user = rng.integers(1, 100_000, events)

    rows: list[dict[str, object]] = []
    truth: list[dict[str, object]] = []

    def ids(k: int) -> str:
        return "".join(f"{int(x):016x}" for x in rng.integers(1, 2**63 - 1, k))

    def span(trace: str, sid: str, parent: str | None, name: str, kind: str, service: str,
             start: int, end: int, attrs: dict[str, str], links: list[dict[str, str]] | None = None) -> None:  # fmt: skip
        rows.append(
            {"trace_id": trace, "span_id": sid, "parent_span_id": parent, "links": links or [], "name": name,
             "kind": kind, "start_ns": int(start), "end_ns": int(end), "status": "UNSET", "service": service,
             "stack": None, "workload": None, "event_id": None, "hop": None, "derived": False,
             "attributes": list(attrs.items()), "resource": [("service.name", service)], "source": "synth"}
        )  # fmt: skip

    messaging = {"messaging.system": "kafka", "messaging.destination.name": "orders"}
    for i in range(events):
        t0 = 1_700_000_000_000_000_000 + i * 10 * MS
        trace, root = ids(2), ids(1)
        c0 = t0 + root_lead[i]
        d0 = c0 + cache[i] + GAP_NS
        p0 = d0 + db[i] + GAP_NS
        p1 = p0 + publish[i]
        pub = ids(1)
        http = {
            "http.route": "/api/checkout",
            "http.request.method": "POST",
            "url.path": f"/api/checkout/{i}",
        }
        span(trace, root, None, "POST /api/checkout", "SERVER", "checkout", t0, p1 + MS // 2, http)
        span(trace, ids(1), root, f"GET cart:{user[i]}", "CLIENT", "checkout", c0, c0 + cache[i],
             {"db.system.name": "redis"})  # fmt: skip
        span(trace, ids(1), root, "SELECT orders", "CLIENT", "checkout", d0, d0 + db[i],
             {"db.system.name": "postgresql", "db.operation.name": "SELECT", "db.collection.name": "orders",
              "db.query.text": f"SELECT * FROM orders WHERE id = {i}"})  # fmt: skip
        span(trace, pub, root, "orders publish", "PRODUCER", "checkout", p0, p1,
             {**messaging, "messaging.operation.type": "publish"})  # fmt: skip
        link = [{"trace_id": trace, "span_id": pub}]
        process = {**messaging, "messaging.operation.type": "process"}
        # accounting: its own trace, root linked to the producer, an INSERT inside
        a_trace, a_root = ids(2), ids(1)
        a0 = p1 + lag_acc[i]
        a_end = a0 + acc_lead + insert[i] + acc_tail
        span(a_trace, a_root, None, "orders process", "CONSUMER", "accounting", a0, a_end, process, link)
        span(a_trace, ids(1), a_root, "INSERT entries", "CLIENT", "accounting", a0 + acc_lead,
             a0 + acc_lead + insert[i],
             {"db.system.name": "postgresql", "db.operation.name": "INSERT", "db.collection.name": "entries"})  # fmt: skip
        f_trace = ids(2)
        f0 = p1 + lag_fraud[i]
        span(f_trace, ids(1), None, "orders process", "CONSUMER", "fraud-detection", f0, f0 + fraud[i], process,
             link)  # fmt: skip
        shared = {ROOT: int(root_lead[i] + 2 * GAP_NS), CACHE: int(cache[i]), DB: int(db[i]),
                  PUBLISH: int(publish[i])}  # fmt: skip
        truth.append(
            {"subscriber": ACCOUNTING, **shared, WAIT_PREFIX + ACCOUNTING: int(lag_acc[i]),
             ACCOUNTING: acc_lead + acc_tail, INSERT: int(insert[i])}
        )  # fmt: skip
        truth.append(
            {"subscriber": FRAUD, **shared, WAIT_PREFIX + FRAUD: int(lag_fraud[i]), FRAUD: int(fraud[i])}
        )
    return ForeignSynth(pa.Table.from_pylist(rows, schema=SPAN_SCHEMA), truth)


def write_foreign_run(out: Path, events: int = 2000, seed: int = 7) -> ForeignSynth:
    """OUT/spans.parquet of a foreign run (`hopscope synth --foreign`): a run directory to try
    `hopscope analyze OUT --label …` on."""
    run = foreign_run(events, seed)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(run.table, out / SPANS_PARQUET, **SPAN_PARQUET_OPTIONS)
    return run
