"""The four workloads on the real Kafka stack, traced through every hop (short runs).

Services: `hopscope up --only kafka-stack` (the stack's declared services) plus a running collector (its file
exporter writes each run's spans to `<runs_root>/<run id>/spans/`). Each test
runs `hopscope bench`'s code path, waits for the spans, runs `hopscope analyze`
and checks the ledger (0 lost / duplicated / misdelivered), trace
completeness (>= 99.9 % complete traces, every expected hop) and hop closure
(ledger e2e vs the critical path within 5 % at p50). One line per workload is
printed: e2e p50/p99 and the top three hops by tail share (`pytest -s`).
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
from hopscope.core.rundir import new_run_id
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import up
from hopscope.deploy.services.collector import Collector
from hopscope.deploy.services.postgres import Postgres
from hopscope.pipelines.bench import resolve_bench, run_bench
from hopscope.pipelines.driver import PreflightError
from hopscope.pipelines.kafka.driver import KafkaDriver
from hopscope.pipelines.kafka.ingest import INGEST_TABLE
from hopscope.pipelines.stack import load_stack
from hopscope.pipelines.workload import WorkloadError, load_workload

RATE = 50.0
DURATION_S = 4.0


@pytest.fixture(scope="module")
def stack() -> Context:
    ctx = Context(load_config())
    up(ctx, ",".join(load_stack("kafka").spec.services), Console(stderr=True))
    collector = Collector(ctx)
    if not collector.running():
        up(ctx, "collector", Console(stderr=True))
    return ctx


def _span_lines(run_dir: Path) -> int:
    return sum(sum(1 for _ in p.open("rb")) for p in (run_dir / "spans").glob("*.jsonl"))


def _wait_for_spans(run_dir: Path, timeout: float = 30.0) -> None:
    """The collector batches and flushes every second: wait until its file stops growing."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        time.sleep(2.5)
        now = _span_lines(run_dir) if (run_dir / "spans").exists() else 0
        if now and now == last:
            return
        last = now
    raise AssertionError(
        f"the collector wrote no (or still growing) spans to {run_dir / 'spans'} "
        "(a collector over its memory limit refuses data: see its log)"
    )


def _bench(ctx: Context, workload: str, **overrides: Any) -> tuple[Path, Any]:
    overrides = {"rate": RATE, "duration_s": DURATION_S, "warmup_s": 1.0, **overrides}
    resolved = resolve_bench("kafka", workload, overrides)
    collector = Collector(ctx)
    out = collector.runs_root() / new_run_id(f"test-kafka-{workload}")
    run_dir, result = run_bench(
        "kafka",
        resolved,
        out=out,
        otlp_endpoint=collector.endpoint(),
        progress=False,
        console=Console(stderr=True),
    )
    _wait_for_spans(run_dir)
    res = CliRunner().invoke(app, ["analyze", str(run_dir)])
    assert res.exit_code == 0, res.output
    return run_dir, result


M, D = "messaging_system", "database"
#: The service map each workload's spans name (client, server, connection_type): every system
#: an event passes, in order (instrumentation/edges.py; point reads are their own workload).
KAFKA_EDGES = {
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
        ("kafka.router", "redis", D),  # the filter lookup
        ("kafka.router", "redis", M),  # the publishes
        ("redis", "kafka.subscriber", M),
    },
    "aggregate": {
        ("hopscope.loadgen", "kafka", M),
        ("kafka", "kafka.streams", M),
        ("kafka.streams", "kafka", M),
        ("kafka", "kafka.reader", M),
        ("hopscope.loadgen", "kafka.streams", ""),  # the point reads
    },
    "ingest": {
        ("hopscope.loadgen", "kafka", M),
        ("kafka", "kafka.ingest", M),
        ("kafka.ingest", "postgresql", D),
    },
}

#: The contrib instrumentations' spans each workload must show (parts of span names).
LIBRARY_SPANS = {
    "write_notify": ("INSERT", "PUBLISH"),  # bench's psycopg INSERT, notifier's redis PUBLISH
    # bench's Kafka `<topic> send`; router: filters read, then a pipeline of PUBLISHes
    "fanout": (" send", "HGETALL", "PUBLISH"),
    "aggregate": (" send", "GET"),  # point reads through httpx
    "ingest": (" send", "INSERT"),  # the ingest consumer's batch INSERT
}


def _check_library_spans(run_dir: Path, workload: str, pairs: dict[str, Any], hops: pd.DataFrame) -> None:
    """Library spans are in the run (with a parent: nested in a hop) and folded, never hops."""
    spans = pd.read_parquet(run_dir / "spans.parquet", columns=["name", "hop", "parent_span_id"])
    library = spans[spans["hop"].isna()]
    names = set(library["name"])
    for part in LIBRARY_SPANS[workload]:
        assert any(part in n for n in names), (part, names)
    assert library["parent_span_id"].notna().all(), "a library span outside any hop was exported"
    # (aggregate's GETs are in its point_read traces)
    assert sum(q["library_spans_folded"] for q in pairs.values()) >= len(library), pairs
    assert not names & set(hops["hop"]), names & set(hops["hop"])


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
    quality = run.quality()["pairs"][f"kafka/{workload}"]
    assert quality["traces"] == len(ours), quality
    assert quality["complete_traces"] / quality["traces"] >= 0.999, quality
    assert quality["missing_expected_hops"] == 0, quality["missing_expected_hops_by_hop"]
    assert quality["orphan_spans"] == 0 and quality["deliveries_broken_path"] == 0, quality
    assert quality["deliveries_without_ledger_receipt"] == 0, quality

    e2e = run.e2e()
    e2e = e2e[e2e["workload"] == workload]
    # warm-up events are in the ledger but in no figure (their deliveries are not analysed)
    n_receipts = int(ours.loc[~ours["warmup"], "receipts"].map(len).sum())
    assert len(e2e) == n_receipts
    p50_ledger = float(np.median(e2e["ledger_e2e_ms"]))
    p50_unattributed = float(np.median(np.abs(e2e["unattributed_ms"])))
    assert p50_unattributed <= 0.05 * p50_ledger, (p50_unattributed, p50_ledger)

    assert (run_dir / "report.html").stat().st_size > 0
    hops = pd.read_parquet(run_dir / "hop_stats.parquet")
    hops = hops[hops["workload"] == workload]
    expected = json.loads((run_dir / "manifest.json").read_text())["expected_hops"]["kafka"][workload]
    assert set(expected) <= set(hops["hop"]), set(expected) - set(hops["hop"])
    _check_library_spans(run_dir, workload, run.quality()["pairs"], hops)
    edges = run.service_map()
    edges = edges[(edges["stack"] == "kafka") & edges["workload"].isin([workload, "point_read"])]
    named = set(zip(edges["client"], edges["server"], edges["connection_type"], strict=True))
    assert named == KAFKA_EDGES[workload], named ^ KAFKA_EDGES[workload]
    assert (edges["errors"] == 0).all(), edges
    top = hops.sort_values("tail_share_p99", ascending=False).head(3)
    summary = {
        "e2e_p50_ms": round(p50_ledger, 2),
        "e2e_p99_ms": round(float(np.percentile(e2e["ledger_e2e_ms"], 99)), 2),
        "top_tail_hops": [f"{h} {s:.0%}" for h, s in zip(top["hop"], top["tail_share_p99"], strict=True)],
        "unattributed_p50_ms": round(p50_unattributed, 3),
    }
    print(f"\nkafka/{workload}: {summary}")
    return summary


def test_write_notify(stack: Context, edges_in_prometheus: Callable[..., set]) -> None:
    run_dir, _ = _bench(stack, "write_notify", subscribers=2)
    _check_run(run_dir, "write_notify")
    # the same map, live: the collector's edge series as Prometheus files them for the dashboards
    run_id = json.loads((run_dir / "manifest.json").read_text())["run_id"]
    assert edges_in_prometheus(run_id, KAFKA_EDGES["write_notify"]) == KAFKA_EDGES["write_notify"]
    manifest = json.loads((run_dir / "manifest.json").read_text())["driver"]
    assert manifest["postgres"]["synchronous_commit"] == "on"
    assert manifest["debezium"]["poll.interval.ms"] == "1"
    assert manifest["debezium"]["producer.override.enable.idempotence"] == "true"
    assert manifest["topics"][0]["replication_factor"] == 3
    assert manifest["topics"][0]["message.timestamp.type"] == "LogAppendTime"


def test_bench_out_elsewhere_ends_with_its_own_spans(stack: Context, tmp_path: Path) -> None:
    """`hopscope bench --out DIR` outside the collector's runs root: the spans are moved into
    DIR/spans and `analyze DIR` finds every delivery's trace; two DIRs of one name (a/x, b/x)
    get distinct run ids, so their spans never mix."""
    runs = {}
    for parent in ("a", "b"):
        out = tmp_path / parent / "write_notify"
        args = ["bench", "--stack", "kafka", "--workload", "write_notify", "--rate", "20", "--duration", "2"]
        res = CliRunner().invoke(app, [*args, "--out", str(out)])
        assert res.exit_code == 0, res.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["spans_gathered"]["files_moved"] > 0, manifest.get("spans_gathered")
        runs[parent] = (out, manifest["run_id"])
        res = CliRunner().invoke(app, ["analyze", str(out)])
        assert res.exit_code == 0, res.output
        e2e = pd.read_parquet(out / "e2e.parquet")
        ledger = pd.read_parquet(out / "ledger.parquet")
        # warm-up events are in the ledger but in no figure (issue #14 item 3)
        delivered = int(ledger.loc[~ledger["warmup"], "receipts"].map(len).sum())
        assert len(e2e) == delivered > 0, f"{len(e2e)} deliveries analysed of {delivered} after warm-up"
        resources = pd.read_parquet(out / "spans.parquet", columns=["resource"])["resource"]
        assert {dict(r).get("hopscope.run_id") for r in resources} == {manifest["run_id"]}
    assert runs["a"][1] != runs["b"][1]


def test_fanout_delivers_only_matching(stack: Context) -> None:
    run_dir, _ = _bench(stack, "fanout")
    _check_run(run_dir, "fanout")
    workload = load_workload("fanout")
    filters = {s.name: s for s in workload.subscribers}
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    spans = pd.read_parquet(run_dir / "spans.parquet", columns=["event_id", "hop", "attributes"])
    receives = spans[spans["hop"] == "subscriber.receive"]
    # The filters are applied by the router from Redis; check each receipt against them here.
    fields_of = {}
    for row in receives.itertuples():
        attrs = dict(row.attributes)
        fields_of.setdefault(row.event_id, []).append(attrs["hopscope.subscriber"])
    assert len(receives) == int(ledger["receipts"].map(len).sum())
    # Ledger: no subscriber outside an event's expected set received it, none missing.
    assert ledger["unexpected_subscribers"].map(len).sum() == 0
    assert ledger["missing_subscribers"].map(len).sum() == 0
    # And the expected sets are what the filters say (region/category drawn per event).
    for row in ledger.itertuples():
        for sub in row.expected_subscribers:
            assert sub in filters
        assert sorted(fields_of.get(row.event_id, [])) == sorted(row.expected_subscribers)
    assert ledger["expected_subscribers"].map(len).min() >= 1  # `all` matches everything
    assert ledger["expected_subscribers"].map(len).max() < len(filters)  # filters really filter


def test_aggregate_and_point_reads(stack: Context) -> None:
    run_dir, _ = _bench(stack, "aggregate", point_read_rate=20.0, key_count=50)
    _check_run(run_dir, "aggregate")
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    reads = ledger[ledger["workload"] == "point_read"]
    assert len(reads) > 0 and (reads["ack_status"] == "ok").all()
    from hopscope.analysis import load

    quality = load(run_dir).quality()["pairs"]["kafka/point_read"]
    assert quality["complete_traces"] / quality["traces"] >= 0.999, quality
    streams = json.loads((run_dir / "manifest.json").read_text())["driver"]["streams"]
    changelogs = streams["changelog_topics"]
    assert changelogs and all(t["replication_factor"] == 3 for t in changelogs)
    assert all(t["min.insync.replicas"] == 2 for t in changelogs)
    producer = streams["logged_configs"]["ProducerConfig"]
    # Streams' own producer default is linger.ms=100; the app must run with the study's settings
    # (the default tuning: batch.size is left to the Java client, read back as it logged it).
    assert {k: v for k, v in producer.items() if k != "batch.size"} == {
        "acks": "-1",
        "enable.idempotence": "true",
        "compression.type": "lz4",
        "linger.ms": "1",
    }
    assert producer["batch.size"].isdigit()
    assert streams["logged_configs"]["StreamsConfig"]["statestore.cache.max.bytes"] == "0"


def test_ingest_sweep(stack: Context) -> None:
    run_dir, _ = _bench(stack, "ingest", rate=None, rate_sweep=[40.0, 80.0], duration_s=2.0)
    _check_run(run_dir, "ingest")
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    assert sorted(ledger["target_rate"].unique().tolist()) == [40.0, 80.0]
    with psycopg.connect(Postgres(stack).dsn()) as conn:
        rows = conn.execute(
            f"SELECT count(*), count(DISTINCT event_id) FROM {INGEST_TABLE} WHERE run_id = %s",
            (run_dir.name,),
        ).fetchone()
    assert rows == (len(ledger), len(ledger))


# --- bad configuration: a clear error before any load --------------------------------------


def test_unknown_workload_and_bad_rate_are_rejected() -> None:
    with pytest.raises(WorkloadError, match="unknown workload 'nope'"):
        resolve_bench("kafka", "nope", {})
    with pytest.raises(WorkloadError, match="rate"):
        resolve_bench("kafka", "fanout", {"rate": 0})
    with pytest.raises(WorkloadError, match="rate"):
        resolve_bench("kafka", "fanout", {"rate": -5})


def test_service_down_fails_preflight(
    stack: Context, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workload = load_workload("fanout", {"rate": 10, "duration_s": 1})
    monkeypatch.setenv("HOPSCOPE_REDIS__EXTERNAL_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(PreflightError, match="redis"):
        KafkaDriver().preflight(workload)
    monkeypatch.delenv("HOPSCOPE_REDIS__EXTERNAL_URL")
    monkeypatch.setenv("HOPSCOPE_KAFKA__EXTERNAL_BOOTSTRAP", "127.0.0.1:1")
    with pytest.raises(PreflightError, match="kafka"):
        KafkaDriver().preflight(workload)
    monkeypatch.delenv("HOPSCOPE_KAFKA__EXTERNAL_BOOTSTRAP")
    with pytest.raises(PreflightError, match="collector"):
        KafkaDriver(otlp_endpoint="http://127.0.0.1:1").preflight(workload)
    # Through the bench path: the error comes before the run directory (and any load) exists.
    out = tmp_path / "never-created"
    with pytest.raises(PreflightError):
        run_bench(
            "kafka",
            workload,
            out=out,
            otlp_endpoint="http://127.0.0.1:1",
            progress=False,
        )
    assert not out.exists()
