"""The Kafka stack's Node.js glue (`kafka-node`, issue #17) end to end on the real services.

Services: `hopscope up --only kafka-node-stack` (the same services as `kafka`) plus a running
collector. Each test runs `hopscope bench`'s code path on `kafka-node`, waits for the spans,
runs `hopscope analyze` and checks the ledger (0 lost / duplicated / misdelivered), trace
completeness (>= 99.9 % complete traces, every expected hop), hop closure, and that the spans
name the same hops and service-map edges as the Python glue's (`test_kafka_pipelines.py`).
One line per workload is printed: e2e p50/p99 and the top three hops by tail share (`pytest -s`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from rich.console import Console
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.core.rundir import LOGS_DIR, new_run_id
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import up
from hopscope.deploy.services.collector import Collector
from hopscope.deploy.services.postgres import Postgres
from hopscope.pipelines.bench import resolve_bench, run_bench
from hopscope.pipelines.kafka.ingest import INGEST_TABLE
from hopscope.pipelines.stack import load_stack
from hopscope.pipelines.workload import load_workload

STACK = "kafka-node"
RATE = 50.0
DURATION_S = 4.0

M, D = "messaging_system", "database"
#: The service map: the Python glue's edges exactly (test_kafka_pipelines.KAFKA_EDGES).
EDGES = {
    "write_notify": {
        ("hopscope.loadgen", "postgresql", D),
        ("postgresql", "kafka.connect", ""),
        ("kafka.connect", "kafka", M),
        ("kafka", "kafka.notifier", M),
        ("kafka.notifier", "redis", M),
        ("redis", "kafka.subscriber", M),
    },
    "fanout": {
        ("hopscope.loadgen", "kafka", M),
        ("kafka", "kafka.router", M),
        ("kafka.router", "redis", D),
        ("kafka.router", "redis", M),
        ("redis", "kafka.subscriber", M),
    },
    "ingest": {
        ("hopscope.loadgen", "kafka", M),
        ("kafka", "kafka.ingest", M),
        ("kafka.ingest", "postgresql", D),
    },
}
GLUE = {"write_notify": "notifier", "fanout": "router", "ingest": "ingest"}


@pytest.fixture(scope="module")
def stack() -> Context:
    ctx = Context(load_config())
    up(ctx, ",".join(load_stack(STACK).spec.services), Console(stderr=True))
    if not Collector(ctx).running():
        up(ctx, "collector", Console(stderr=True))
    return ctx


def _span_lines(run_dir: Path) -> int:
    return sum(sum(1 for _ in p.open("rb")) for p in (run_dir / "spans").glob("*.jsonl"))


def _wait_for_spans(run_dir: Path, timeout: float = 30.0) -> None:
    """The collector flushes every second: wait until its file stops growing."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        time.sleep(2.5)
        now = _span_lines(run_dir) if (run_dir / "spans").exists() else 0
        if now and now == last:
            return
        last = now
    raise AssertionError(f"the collector wrote no (or still growing) spans to {run_dir / 'spans'}")


def _bench(
    ctx: Context, workload: str, driver_options: dict[str, Any] | None = None, **overrides: Any
) -> Path:
    overrides = {"rate": RATE, "duration_s": DURATION_S, "warmup_s": 1.0, **overrides}
    resolved = resolve_bench(STACK, workload, overrides)
    collector = Collector(ctx)
    out = collector.runs_root() / new_run_id(f"test-kafka-node-{workload}")
    run_dir, _ = run_bench(
        STACK,
        resolved,
        out=out,
        otlp_endpoint=collector.endpoint(),
        progress=False,
        console=Console(stderr=True),
        driver_options=driver_options,
    )
    _wait_for_spans(run_dir)
    res = CliRunner().invoke(app, ["analyze", str(run_dir)])
    assert res.exit_code == 0, res.output
    return run_dir


def _check_run(run_dir: Path, workload: str) -> dict[str, Any]:
    from hopscope.analysis import load
    from hopscope.collector.ingest import ingest_run

    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    ours = ledger[ledger["workload"] == workload]
    outcomes = ours["outcome"].value_counts().to_dict()
    assert len(ours) > 0
    assert outcomes.get("lost", 0) == 0, outcomes
    assert outcomes.get("duplicated", 0) == 0, outcomes
    assert outcomes.get("misdelivered", 0) == 0, outcomes
    assert (ours["ack_status"] == "ok").all(), ours["ack_message"].dropna().head().tolist()

    ingest_run(run_dir)
    run = load(run_dir)
    quality = run.quality()["pairs"][f"{STACK}/{workload}"]
    assert quality["traces"] == len(ours), quality
    assert quality["complete_traces"] / quality["traces"] >= 0.999, quality
    assert quality["missing_expected_hops"] == 0, quality["missing_expected_hops_by_hop"]
    assert quality["orphan_spans"] == 0 and quality["deliveries_broken_path"] == 0, quality
    assert quality["deliveries_without_ledger_receipt"] == 0, quality

    e2e = run.e2e()
    e2e = e2e[e2e["workload"] == workload]
    n_receipts = int(ours.loc[~ours["warmup"], "receipts"].map(len).sum())
    assert len(e2e) == n_receipts
    p50_ledger = float(np.median(e2e["ledger_e2e_ms"]))
    p50_unattributed = float(np.median(np.abs(e2e["unattributed_ms"])))
    assert p50_unattributed <= 0.05 * p50_ledger, (p50_unattributed, p50_ledger)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    hops = pd.read_parquet(run_dir / "hop_stats.parquet")
    hops = hops[hops["workload"] == workload]
    expected = manifest["expected_hops"][STACK][workload]
    # the hops of the Python glue, name for name
    assert expected == [h.name for h in load_stack("kafka").hops(workload).hops]
    assert set(expected) <= set(hops["hop"]), set(expected) - set(hops["hop"])
    edges = run.service_map()
    edges = edges[(edges["stack"] == STACK) & (edges["workload"] == workload)]
    named = set(zip(edges["client"], edges["server"], edges["connection_type"], strict=True))
    assert named == EDGES[workload], named ^ EDGES[workload]
    assert (edges["errors"] == 0).all(), edges

    # the glue's spans are the Node.js process's, labelled as this stack
    spans = pd.read_parquet(run_dir / "spans.parquet", columns=["service", "stack", "hop", "resource"])
    glue = spans[spans["service"] == f"kafka.{GLUE[workload]}"]
    assert len(glue) > 0
    assert set(glue["stack"]) == {STACK}
    assert set(spans["stack"].dropna()) == {STACK}
    # managed like the Python glue: its log in the run's logs, a clean exit after sending its spans
    driver = manifest["driver"]
    assert driver["glue_exit_codes"] == {GLUE[workload]: 0}, driver.get("glue_exit_codes")
    log = (run_dir / LOGS_DIR / f"{STACK}-{GLUE[workload]}.log").read_text()
    assert '"failed":0' in log and "0 error(s)" in log, log[-2000:]

    top = hops.sort_values("tail_share_p99", ascending=False).head(3)
    summary = {
        "e2e_p50_ms": round(p50_ledger, 2),
        "e2e_p99_ms": round(float(np.percentile(e2e["ledger_e2e_ms"], 99)), 2),
        "events": len(ours),
        "deliveries": len(e2e),
        "top_tail_hops": [f"{h} {s:.0%}" for h, s in zip(top["hop"], top["tail_share_p99"], strict=True)],
        "unattributed_p50_ms": round(p50_unattributed, 3),
    }
    print(f"\n{STACK}/{workload}: {summary}")
    return driver


def test_write_notify(stack: Context, edges_in_prometheus: Callable[..., set]) -> None:
    run_dir = _bench(stack, "write_notify", subscribers=2)
    driver = _check_run(run_dir, "write_notify")
    run_id = json.loads((run_dir / "manifest.json").read_text())["run_id"]
    assert edges_in_prometheus(run_id, EDGES["write_notify"]) == EDGES["write_notify"]
    # the consumer the Node.js process built, as it reported it (the fairness rows read this)
    (consumer,) = driver["consumers"]
    assert consumer["client"] == "notifier"
    assert consumer["library"].startswith("kafkajs ")
    assert {k: consumer[k] for k in ("fetch.min.bytes", "fetch.wait.max.ms", "max_poll_records")} == {
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 5,
        "max_poll_records": 500,
    }
    assert driver["debezium"]["poll.interval.ms"] == "1"
    assert driver["topics"][0]["message.timestamp.type"] == "LogAppendTime"


def test_fanout_delivers_only_matching_with_tuned_consumer(stack: Context) -> None:
    tuning = {"consumer": {"fetch_wait_max_ms": 2, "max_poll_records": 64}}
    run_dir = _bench(stack, "fanout", driver_options={"tuning": tuning})
    driver = _check_run(run_dir, "fanout")
    (consumer,) = driver["consumers"]
    assert (consumer["client"], consumer["fetch.wait.max.ms"], consumer["max_poll_records"]) == (
        "router",
        2,
        64,
    )
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    filters = {s.name for s in load_workload("fanout").subscribers}
    spans = pd.read_parquet(run_dir / "spans.parquet", columns=["event_id", "hop", "attributes"])
    receives = spans[spans["hop"] == "subscriber.receive"]
    got: dict[str, list[str]] = {}
    for row in receives.itertuples():
        got.setdefault(row.event_id, []).append(dict(row.attributes)["hopscope.subscriber"])
    assert len(receives) == int(ledger["receipts"].map(len).sum())
    assert ledger["unexpected_subscribers"].map(len).sum() == 0
    assert ledger["missing_subscribers"].map(len).sum() == 0
    for row in ledger.itertuples():
        assert set(row.expected_subscribers) <= filters
        assert sorted(got.get(row.event_id, [])) == sorted(row.expected_subscribers)
    assert ledger["expected_subscribers"].map(len).max() < len(filters)  # filters really filter


def test_ingest_sweep(stack: Context) -> None:
    run_dir = _bench(stack, "ingest", rate=None, rate_sweep=[40.0, 80.0], duration_s=2.0)
    _check_run(run_dir, "ingest")
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    assert sorted(ledger["target_rate"].unique().tolist()) == [40.0, 80.0]
    with psycopg.connect(Postgres(stack).dsn()) as conn:
        rows = conn.execute(
            f"SELECT count(*), count(DISTINCT event_id) FROM {INGEST_TABLE} WHERE run_id = %s",
            (json.loads((run_dir / "manifest.json").read_text())["run_id"],),
        ).fetchone()
    # one row per event, committed before its receipt
    assert rows == (len(ledger), len(ledger))
