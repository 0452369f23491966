"""The open-loop generator driven through the LoopbackDriver simulation (a fake of our own driver interface)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.core.attributes import (
    ATTR_EDGE_CLIENT,
    ATTR_EDGE_SERVER,
    ATTR_EDGE_TYPE,
    ATTR_EVENT_ID,
    ATTR_HOP,
    ATTR_SEND_LAG_NS,
    LOADGEN_SPAN_NAME,
)
from hopscope.instrumentation.carriers import parse_traceparent
from hopscope.instrumentation.edges import Edge
from hopscope.instrumentation.tracing import setup_tracing, shutdown_tracing
from hopscope.pipelines.bench import resolve_bench, run_bench
from hopscope.pipelines.driver import (
    Ack,
    Driver,
    Event,
    LoopbackConfig,
    LoopbackDriver,
    PreflightError,
    RunContext,
    UnknownStackError,
    create_driver,
    register_driver,
)
from hopscope.pipelines.loadgen import LoadGenerator, plan_events
from hopscope.pipelines.stack import StackError
from hopscope.pipelines.workload import Workload, load_workload


def _wl(name: str = "fanout", **over: Any) -> Workload:
    base = {"rate": 400, "duration_s": 1.0, "warmup_s": 0.0, "schedule": "constant"}
    return load_workload(name, base | over)


def _run(workload: Workload, driver: Driver, **options: Any):
    gen = LoadGenerator(workload, driver, stack="kafka", run_id="t", progress=False, **options)
    return gen, asyncio.run(gen.run())


def test_injected_faults_are_classified_exactly() -> None:
    w = _wl()
    driver = LoopbackDriver(
        LoopbackConfig(
            lose_seqs=frozenset({3, 10}), duplicate_seqs=frozenset({5}), misdeliver_seqs=frozenset({7})
        )
    )
    _gen, result = _run(w, driver)
    t = result.ledger.table.to_pydict()
    outcome = dict(zip(range(len(t["outcome"])), t["outcome"], strict=True))
    assert outcome[3] == outcome[10] == "lost"
    assert outcome[5] == "duplicated"
    # seq 7 only misdelivers if some subscriber does not match it ('all' matches everything)
    n_subs_7 = len(t["expected_subscribers"][7])
    assert outcome[7] == ("misdelivered" if n_subs_7 < 6 else "delivered")
    others = [o for i, o in outcome.items() if i not in {3, 5, 7, 10}]
    assert set(others) == {"delivered"} and len(others) == 396
    assert result.sent_events == 400 and result.ledger.unknown_receipts == 0


def test_expected_subscribers_follow_the_filters() -> None:
    w = _wl()
    _gen, result = _run(w, LoopbackDriver())
    t = result.ledger.table
    plan = plan_events(w, "t")
    for i in range(0, 400, 37):
        fields = plan.combos[int(plan.combo_index[i])]
        assert t["expected_subscribers"][i].as_py() == w.expected_subscribers(fields)
        assert sorted(r["subscriber"] for r in t["receipts"][i].as_py()) == sorted(
            w.expected_subscribers(fields)
        )


def test_slow_acks_do_not_delay_the_schedule() -> None:
    """Open loop: every ack takes 0.4 s; a closed-loop sender would need 400 × 0.4 s."""
    w = _wl("write_notify", rate=400, duration_s=1.0)
    _gen, result = _run(w, LoopbackDriver(LoopbackConfig(ack_delay_s=0.4, deliver_delay_s=0.4)))
    lag = result.send_lag_ns
    assert lag.size == 400
    assert np.max(lag) < 0.2e9  # far below one ack time, let alone 400
    ack = result.ledger.samples["ack/write_notify"]
    assert ack.size == 400 and ack.min() >= 0.4e9  # measured from the intended time


def test_a_stall_shows_up_in_latency_from_intended_time() -> None:
    w = _wl("write_notify", rate=200, duration_s=1.0)
    driver = LoopbackDriver(LoopbackConfig(ack_delay_s=0.001, deliver_delay_s=0.001, stall=(0.3, 0.4)))
    gen, result = _run(w, driver)
    t = result.ledger.table.to_pydict()
    start = int(gen.ledger.intended_ns[0])
    first = np.array([min(r["received_ns"] for r in rs) for rs in t["receipts"]])
    offset = np.array(t["intended_ns"]) - start
    latency = first - np.array(t["intended_ns"])
    # Events intended well inside the stall window wait until it ends (~0.72 s after start).
    inside = (offset > 0.35e9) & (offset < 0.6e9)
    assert inside.sum() > 30
    stall_end = first[inside].min() - start
    assert stall_end >= 0.7e9
    assert np.all(latency[inside] >= (stall_end - offset[inside]) - 5e6)
    # ... and the schedule kept going meanwhile: sends during the stall were on time.
    assert np.percentile(result.send_lag_ns, 50) < 0.05e9


@pytest.mark.parametrize("root_spans", ["live", "deferred"])
def test_root_span_starts_at_intended_time_and_traceparent_reaches_driver(root_spans: str) -> None:
    seen: dict[str, str | None] = {}

    class Spy(LoopbackDriver):
        def send(self, event: Event) -> Awaitable[Ack]:
            seen[event.event_id] = event.traceparent
            return super().send(event)

        def root_edge(self, workload: str) -> Edge | None:
            return Edge(server="postgresql", type="database")

    exporter = InMemorySpanExporter()
    provider = setup_tracing("hopscope.loadgen", "kafka", "t", exporter=exporter)
    w = _wl("write_notify", rate=100, duration_s=0.5)
    _gen, result = _run(w, Spy(), tracer_provider=provider, root_spans=root_spans)
    shutdown_tracing(provider)
    spans = {s.attributes[ATTR_EVENT_ID]: s for s in exporter.get_finished_spans()}
    t = result.ledger.table.to_pydict()
    assert len(spans) == len(t["event_id"]) == 50
    for i, eid in enumerate(t["event_id"]):
        span = spans[eid]
        assert span.name == LOADGEN_SPAN_NAME and span.parent is None
        assert span.attributes[ATTR_HOP] == "client.insert"  # kafka write_notify's first hop
        assert span.start_time == t["intended_ns"][i]
        assert span.end_time == t["acked_ns"][i]
        assert span.attributes[ATTR_SEND_LAG_NS] == t["sent_ns"][i] - t["intended_ns"][i]
        # the edge into the stack the driver names, with the load generator as its client
        assert (span.attributes[ATTR_EDGE_CLIENT], span.attributes[ATTR_EDGE_SERVER]) == (
            "hopscope.loadgen",
            "postgresql",
        )
        assert span.attributes[ATTR_EDGE_TYPE] == "database"
        tp = parse_traceparent(seen[eid])
        assert tp.trace_id == t["trace_id"][i] == f"{span.context.trace_id:032x}"
        assert tp.span_id == f"{span.context.span_id:016x}"


def test_without_tracing_no_traceparent() -> None:
    seen: list[str | None] = []

    class Spy(LoopbackDriver):
        def send(self, event: Event) -> Awaitable[Ack]:
            seen.append(event.traceparent)
            return super().send(event)

    _gen, result = _run(
        _wl(rate=50, duration_s=0.2), Spy(), tracer_provider=setup_tracing("x", "k", "r", enabled=False)
    )
    assert seen == [None] * 10 and result.ledger.table["trace_id"].null_count == 10


class Failing(Driver):
    """A driver whose sends fail in the three ways a real one can."""

    stack = "failing"

    def preflight(self, workload: Workload) -> None:
        pass

    async def setup(self, workload: Workload, run: RunContext) -> None:
        self.loop = asyncio.get_running_loop()

    def send(self, event: Event) -> Awaitable[Ack]:
        if event.seq % 3 == 0:
            raise ConnectionError("refused")
        fut = self.loop.create_future()
        if event.seq % 3 == 1:
            fut.set_exception(RuntimeError("broker said no"))
        return fut  # seq % 3 == 2: never acked

    async def drain(self, timeout_s: float) -> None:
        pass

    async def teardown(self) -> None:
        pass

    def manifest(self) -> dict[str, Any]:
        return {}


def test_errors_and_timeouts_are_recorded_not_dropped() -> None:
    w = _wl("write_notify", rate=60, duration_s=0.5, ack_timeout_s=0.2, drain_timeout_s=0.1)
    _gen, result = _run(w, Failing())
    t = result.ledger.table.to_pydict()
    assert len(t["event_id"]) == 30
    for i in range(30):
        status, message = t["ack_status"][i], t["ack_message"][i]
        if i % 3 == 0:
            assert status == "error" and "ConnectionError: refused" in message
        elif i % 3 == 1:
            assert status == "error" and "broker said no" in message
        else:
            assert status == "timeout" and t["acked_ns"][i] is None
        assert t["outcome"][i] == "lost"


def test_inflight_limit_marks_events_not_sent() -> None:
    w = _wl("write_notify", rate=100, duration_s=0.3, ack_timeout_s=0.1)
    _gen, result = _run(w, Failing(), max_inflight=1)
    assert result.not_sent_events > 0
    msgs = [m for m in result.ledger.table["ack_message"].to_pylist() if m and m.startswith("not sent")]
    assert len(msgs) == result.not_sent_events


def test_point_reads_and_warmup_flags() -> None:
    w = load_workload(
        "aggregate",
        {"rate": 100, "point_read_rate": 20, "duration_s": 1, "warmup_s": 0.5, "schedule": "constant"},
    )
    _gen, result = _run(w, LoopbackDriver())
    t = result.ledger.table.to_pydict()
    reads = [i for i, wl in enumerate(t["workload"]) if wl == "point_read"]
    assert len(reads) == 30 and len(t["workload"]) == 180
    assert all(t["expected_subscribers"][i] == [] and t["outcome"][i] == "delivered" for i in reads)
    events = [i for i, wl in enumerate(t["workload"]) if wl == "aggregate"]
    assert sum(t["warmup"][i] for i in events) == 50  # first 0.5 s of 1.5 s at 100/s
    assert "ack/point_read" in result.ledger.samples


def test_registry_and_bench_validation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(UnknownStackError, match=r"known stacks: kafka, harper, .*loopback"):
        create_driver("nats")
    ghost = tmp_path / "ghost"
    ghost.mkdir()
    (ghost / "stack.yaml").write_text(
        "name: ghost\ndriver: missing:GhostDriver\nworkloads:\n  fanout: {hops: [{name: a}]}\n"
    )
    monkeypatch.setenv("HOPSCOPE_STACK_PATH", str(ghost))
    with pytest.raises(
        UnknownStackError,
        match=r"driver for stack 'ghost' is not available: module hopscope_stack_ghost.missing",
    ):
        create_driver("ghost")
    with pytest.raises(StackError, match="stack 'ghost' declares no hops for workload 'ingest'"):
        resolve_bench("ghost", "ingest", {})
    register_driver("failing", Failing)
    with pytest.raises(UnknownStackError, match="'failing' has a registered driver but no declaration"):
        resolve_bench("failing", "fanout", {})
    assert resolve_bench("loopback", "fanout", {"rate": 5}).rate == 5


def test_preflight_failure_sends_nothing(tmp_path: Path) -> None:
    class Down(LoopbackDriver):
        def preflight(self, workload: Workload) -> None:
            raise PreflightError("redis", "127.0.0.1:6379", "connection refused")

        def send(self, event: Event) -> Awaitable[Ack]:
            raise AssertionError("no load may be sent after a failed preflight")

    register_driver("down", Down)
    with pytest.raises(PreflightError, match=r"redis at 127.0.0.1:6379: connection refused"):
        run_bench("down", _wl(), out=tmp_path / "run", tracing=False, progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_bench_writes_ledger_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    args = [
        "bench",
        "--stack",
        "loopback",
        "--workload",
        "fanout",
        "--rate",
        "200",
        "--duration",
        "0.5",
        "--schedule",
        "constant",
    ]
    res = runner.invoke(app, [*args, "--warmup", "0", "--out", str(out), "--no-tracing", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "SIMULATION" in res.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["simulation"] is True and manifest["driver"]["simulation"] is True
    assert manifest["workload"]["rate"] == 200 and manifest["load"]["sent_events"] == 100
    assert manifest["expected_hops"] == {"loopback": {"fanout": ["loadgen.send"]}}
    assert set(manifest) >= {"versions", "host", "git", "run_id"}
    assert pq.read_table(out / "ledger.parquet").num_rows == 100

    bad = runner.invoke(
        app, ["bench", "--stack", "loopback", "--workload", "nope", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "known workloads" in bad.output and not (tmp_path / "x").exists()
    bad = runner.invoke(app, ["bench", "--stack", "loopback", "--workload", "fanout", "--rate", "-1"])
    assert bad.exit_code == 2 and "greater than 0" in bad.output
    bad = runner.invoke(app, ["bench", "--stack", "nats", "--workload", "fanout"])
    assert bad.exit_code == 2 and "unknown stack 'nats'" in bad.output


def test_root_spans_auto_defers_with_deferred_export_and_at_high_rates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hopscope.instrumentation.tracing import EXPORT_MODE_ENV
    from hopscope.pipelines.bench import LIVE_ROOT_SPANS_MAX_RATE, resolve_root_spans
    from hopscope.pipelines.workload import WorkloadError

    monkeypatch.delenv(EXPORT_MODE_ENV, raising=False)  # deferred export: spans go at the end anyway
    assert (
        resolve_root_spans("auto", load_workload("write_notify", {"rate": 10.0, "duration_s": 1.0}))
        == "deferred"
    )
    monkeypatch.setenv(EXPORT_MODE_ENV, "batch")  # background export: live unless the rate is high
    slow = load_workload("write_notify", {"rate": 100.0, "duration_s": 1.0})
    fast = load_workload("write_notify", {"rate": LIVE_ROOT_SPANS_MAX_RATE * 2, "duration_s": 1.0})
    sweep = load_workload("ingest", {"rate_sweep": [100.0, LIVE_ROOT_SPANS_MAX_RATE + 1], "duration_s": 1.0})
    assert resolve_root_spans("auto", slow) == "live"
    assert resolve_root_spans("auto", fast) == "deferred"
    assert resolve_root_spans("auto", sweep) == "deferred"  # the sweep's peak step decides
    assert resolve_root_spans("live", fast) == "live"  # an explicit choice is kept
    with pytest.raises(WorkloadError, match="'auto', 'live' or 'deferred'"):
        resolve_root_spans("sometimes", slow)
