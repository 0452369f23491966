"""The `postgres` stack (issue #18) end to end on the real primary and synchronous replica.

Services: `hopscope up --only postgres-stack` (the `pgsync` pair) plus a running collector. Each
workload runs `hopscope bench`'s code path briefly, waits for the spans, runs `hopscope analyze`
and checks the ledger (0 lost / duplicated / misdelivered), trace completeness (>= 99.9 %
complete traces with every expected hop) and the fairness read-back. The durability test pauses
the replica (SIGSTOP): a commit then waits and no LISTEN session hears of the row until the
replica runs again. One line per workload is printed: e2e p50/p99 and the top tail hops (`-s`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import psycopg
import pytest
from psycopg import sql
from rich.console import Console
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.core.rundir import new_run_id
from hopscope.deploy.base import Context, read_pid
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import up
from hopscope.deploy.services.collector import Collector
from hopscope.deploy.services.pgsync import PgSync
from hopscope.pipelines.bench import resolve_bench, run_bench
from hopscope.pipelines.postgres.schema import EVENTS, EVENTS_DDL, INGEST
from hopscope.pipelines.stack import load_stack
from hopscope.pipelines.workload import load_workload

STACK = "postgres"
RATE = 40.0
DURATION_S = 4.0


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
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        time.sleep(2.5)
        now = _span_lines(run_dir) if (run_dir / "spans").exists() else 0
        if now and now == last:
            return
        last = now
    raise AssertionError(f"the collector wrote no (or still growing) spans to {run_dir / 'spans'}")


def _bench(ctx: Context, workload: str, **overrides: Any) -> Path:
    overrides = {"rate": RATE, "duration_s": DURATION_S, "warmup_s": 1.0, **overrides}
    resolved = resolve_bench(STACK, workload, overrides)
    collector = Collector(ctx)
    out = collector.runs_root() / new_run_id(f"test-postgres-{workload}")
    run_dir, _ = run_bench(
        STACK,
        resolved,
        out=out,
        otlp_endpoint=collector.endpoint(),
        progress=False,
        console=Console(stderr=True),
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
    expected = [h for h in manifest["expected_hops"][STACK][workload] if not h.startswith("wait:")]
    assert set(expected) <= set(hops["hop"]), set(expected) - set(hops["hop"])
    spans = pd.read_parquet(run_dir / "spans.parquet", columns=["stack"])
    assert set(spans["stack"].dropna()) == {STACK}

    # the durability controls as the primary reported them
    driver = manifest["driver"]
    assert driver["postgres"]["synchronous_commit"] == "on"
    assert driver["postgres"]["synchronous_standby_names"] == "FIRST 1 (hopscope_replica)"
    assert [r["sync_state"] for r in driver["replicas"]] == ["sync"]
    assert driver["receiver_errors"] == []
    assert driver["spans"]["errors"] == 0 and driver["spans"]["without_commit_time"] == 0, driver["spans"]

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


def test_write_notify(stack: Context) -> None:
    run_dir = _bench(stack, "write_notify", subscribers=3)
    driver = _check_run(run_dir, "write_notify")
    # three LISTEN sessions, one channel each (the run's)
    sessions = driver["listen_sessions"]
    assert len(sessions) == 3 and len({c for chans in sessions.values() for c in chans}) == 1


def test_fanout_delivers_only_matching(stack: Context) -> None:
    run_dir = _bench(stack, "fanout")
    _check_run(run_dir, "fanout")
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
        assert sorted(got.get(row.event_id, [])) == sorted(row.expected_subscribers)
    assert ledger["expected_subscribers"].map(len).max() < len(filters)  # filters really filter


def test_aggregate_with_point_reads(stack: Context) -> None:
    run_dir = _bench(stack, "aggregate", point_read_rate=10.0)
    _check_run(run_dir, "aggregate")
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    reads = ledger[ledger["workload"] == "point_read"]
    assert len(reads) > 0 and (reads["ack_status"] == "ok").all()
    spans = pd.read_parquet(run_dir / "spans.parquet", columns=["hop"])
    assert (spans["hop"] == "pg.select").sum() == len(reads)


def test_ingest_sweep(stack: Context) -> None:
    run_dir = _bench(stack, "ingest", rate=None, rate_sweep=[40.0, 80.0], duration_s=2.0)
    _check_run(run_dir, "ingest")
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    assert sorted(ledger["target_rate"].unique().tolist()) == [40.0, 80.0]
    with psycopg.connect(PgSync(stack).dsn()) as conn:
        rows = conn.execute(
            f"SELECT count(*), count(DISTINCT event_id) FROM {INGEST} WHERE run_id = %s",
            (json.loads((run_dir / "manifest.json").read_text())["run_id"],),
        ).fetchone()
        replica_rows = rows
    # one row per event, committed before its receipt; the replica has them too
    assert rows == (len(ledger), len(ledger))
    with psycopg.connect(PgSync(stack).replica_dsn()) as conn:
        replica_rows = conn.execute(
            f"SELECT count(*) FROM {INGEST} WHERE run_id = %s",
            (json.loads((run_dir / "manifest.json").read_text())["run_id"],),
        ).fetchone()
    assert replica_rows == (len(ledger),)


def _replica_processes(svc: PgSync) -> list[psutil.Process]:
    pid = read_pid(svc.ctx.service_dir(svc.name) / "replica.pid")
    assert pid is not None
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def test_notification_only_after_the_replica_confirmed(stack: Context) -> None:
    """Pause the replica: the commit waits (synchronous_commit = on) and nobody is notified;
    resume it: the commit returns and the notification arrives, after the resume."""
    svc = PgSync(stack)
    channel = f"hs_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(svc.dsn(), autocommit=True) as conn:
        for statement in EVENTS_DDL:
            conn.execute(statement)
    listener = psycopg.connect(svc.dsn(), autocommit=True)
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    done: dict[str, int] = {}

    def write() -> None:
        with psycopg.connect(svc.dsn(), autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {EVENTS} (run_id, event_id, key, fields, chan, route, traceparent, payload, sent_ns) "
                "VALUES ('test-sync', 'e-1', 'k', '{}', %s, '{}', %s, '', 0)",
                (channel, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            )
        done["committed"] = time.time_ns()

    procs = _replica_processes(svc)
    writer = threading.Thread(target=write, daemon=True)
    try:
        for proc in procs:
            os.kill(proc.pid, signal.SIGSTOP)
        writer.start()
        heard = list(listener.notifies(timeout=2.0))
        assert heard == [] and "committed" not in done, (heard, done)
        with psycopg.connect(svc.dsn(), autocommit=True) as conn:
            waits = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
            ).fetchone()[0]
        assert waits >= 1  # the commit is waiting for the replica, as synchronous_commit promises
    finally:
        resumed = time.time_ns()
        for proc in procs:
            with contextlib.suppress(psutil.Error, OSError):
                os.kill(proc.pid, signal.SIGCONT)
    heard = list(listener.notifies(timeout=15.0, stop_after=1))
    received = time.time_ns()
    writer.join(15)
    listener.close()
    assert [n.channel for n in heard] == [channel]
    assert json.loads(heard[0].payload)["e"] == "e-1"
    assert done["committed"] >= resumed and received >= resumed


def test_the_pair_restarts_with_its_replica_required(stack: Context) -> None:
    """down, then up: the primary comes back with synchronous_standby_names already set and its
    replica not yet started; the start-up's own writes must not wait for that replica (they
    did: `up` hung in SyncRep for ever on every restart)."""
    from hopscope.deploy.lifecycle import down

    assert "pgsync" in down(stack, "pgsync")
    done = threading.Event()
    failure: list[BaseException] = []

    def start() -> None:
        try:
            up(stack, "pgsync", Console(quiet=True))
        except BaseException as exc:  # reported by the assertion below
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=start, daemon=True).start()
    assert done.wait(90), "pgsync did not come back within 90 s after a restart"
    assert not failure, failure
    PgSync(stack).health()  # a synchronous write through the replica
