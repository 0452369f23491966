"""Tracing overhead against known truth (`hopscope.analysis.overhead`): identical arms, a traced
arm 20 % slower, a thin tail, the segment that was made to grow; and the report's overhead
table on a hand-built experiment run whose phases keep their ledgers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hopscope.analysis.overhead import (
    SEGMENTS,
    TARGETS,
    Overhead,
    delivery_segments,
    grown_segment,
    overheads,
    paired_bootstrap,
)
from hopscope.analysis.report.context import ReportContext
from hopscope.analysis.report.experiment_sections import (
    BASIS_FIGURES,
    BASIS_LEDGER,
    apply_experiment,
    overhead_frame,
    overhead_section,
)
from hopscope.core.rundir import LEDGER, PHASES_DIR

MS = 1_000_000

# -- the statistics ----------------------------------------------------------------------------


def _pairs(n: int, k: int = 3, seed: int = 1) -> list[np.ndarray]:
    """k arms of n lognormal latencies (~10 ms), each pair with its own level (drift)."""
    rng = np.random.default_rng(seed)
    return [(1.0 + 0.15 * i) * rng.lognormal(np.log(10.0), 0.3, n) for i in range(k)]


def test_identical_arms_give_an_interval_around_zero_and_under_target() -> None:
    untraced = _pairs(20_000)
    traced = [a.copy() for a in untraced]
    rows = {o.quantile: o for o in overheads(traced, untraced, n_boot=300)}
    assert list(rows) == list(TARGETS)
    for name, (q, target) in TARGETS.items():
        o = rows[name]
        assert (o.q, o.target) == (q, target)
        assert o.overhead == pytest.approx(0.0, abs=1e-12)
        assert o.ci_low <= 0.0 <= o.ci_high, o
        assert o.supported and o.verdict == "under target", o
        assert o.n_traced == o.n_untraced == 60_000


def test_pairs_are_picked_alike_for_both_arms() -> None:
    """The pairs' levels differ by 30 %: drawn independently per arm the interval would be wide
    (no verdict); picked alike they cancel."""
    untraced = _pairs(20_000)
    draws_t, draws_u = paired_bootstrap(untraced, [a.copy() for a in untraced], np.array([0.5]), 200, 0)
    ratio = draws_t[:, 0] / draws_u[:, 0] - 1.0
    assert np.abs(ratio).max() < 0.03
    assert draws_t[:, 0].std() / draws_t[:, 0].mean() > 0.03  # the drift is there, in both arms alike


def test_a_traced_arm_twenty_percent_slower_is_over_target_with_an_interval_holding_the_truth() -> None:
    untraced = _pairs(20_000, seed=2)
    traced = [1.2 * a for a in _pairs(20_000, seed=3)]  # same pair levels, other samples
    for o in overheads(traced, untraced, n_boot=300):
        assert o.overhead == pytest.approx(0.20, abs=0.02), o
        assert o.ci_low <= 0.20 <= o.ci_high, o
        assert o.ci_low > o.target and o.verdict == "over target", o


def test_a_thin_tail_is_not_supported_at_p99() -> None:
    untraced = _pairs(200)  # 600 deliveries: 6 beyond the p99
    rows = {o.quantile: o for o in overheads([1.5 * a for a in untraced], untraced, n_boot=100)}
    assert rows["p50"].supported
    assert not rows["p99"].supported
    assert overheads([], [], n_boot=10) == []
    assert overheads([np.empty(0)], [np.ones(5)], n_boot=10) == []


def test_the_verdict_reads_the_interval_against_the_target() -> None:
    def o(lo: float, hi: float) -> Overhead:
        return Overhead("p99", 0.99, 1.0, 1.0, (lo + hi) / 2, lo, hi, 0.05, 100, 100, True)

    assert o(-0.01, 0.05).verdict == "under target"
    assert o(0.051, 0.2).verdict == "over target"
    assert o(0.05, 0.2).verdict == "inconclusive"
    assert o(-0.01, 0.06).to_json()["interval_reaches_target"] is True


def _segments(n: int, seed: int, grow: dict[str, float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grow = grow or {}
    return pd.DataFrame(
        {
            "send_lag_ms": rng.exponential(0.2, n) + grow.get("send_lag_ms", 0.0),
            "write_round_trip_ms": rng.lognormal(np.log(5.0), 0.2, n) + grow.get("write_round_trip_ms", 0.0),
            "after_ack_ms": rng.lognormal(np.log(10.0), 0.2, n) + grow.get("after_ack_ms", 0.0),
        }
    )


@pytest.mark.parametrize("column", ["write_round_trip_ms", "after_ack_ms"])
def test_grown_segment_names_the_segment_that_was_made_to_grow(column: str) -> None:
    untraced = [_segments(3000, seed=s) for s in range(3)]
    traced = [_segments(3000, seed=10 + s, grow={column: 2.0}) for s in range(3)]
    top, every = grown_segment(traced, untraced, n_boot=200)
    assert top is not None
    assert (top.segment, top.name, top.span) == (column, *SEGMENTS[column])
    assert top.growth_ms == pytest.approx(2.0, abs=0.3)
    assert top.ci_low <= 2.0 <= top.ci_high
    assert [r.segment for r in every] == list(SEGMENTS)
    others = [r for r in every if r.segment != column]
    assert all(r.ci_low <= 0.0 <= r.ci_high for r in others), others
    # a delivery missing a segment is left out; an arm without any leaves no answer
    assert grown_segment([_segments(5, 0).assign(after_ack_ms=np.nan)], [_segments(5, 1)]) == (None, [])


# -- segments from a ledger --------------------------------------------------------------------

RECEIPT = pa.struct([("subscriber", pa.string()), ("received_ns", pa.int64())])


def _ledger_table(rows: list[dict], stack: str, workload: str = "write_notify") -> pa.Table:
    """A phase's ledger: each row intended/sent/acked/receipts in ns, a `warmup` mark."""
    return pa.table(
        {
            "stack": pa.array([stack] * len(rows)),
            "workload": pa.array([workload] * len(rows)),
            "event_id": pa.array([r["event_id"] for r in rows]),
            "intended_ns": pa.array([r["intended_ns"] for r in rows], pa.int64()),
            "sent_ns": pa.array([r.get("sent_ns") for r in rows], pa.int64()),
            "acked_ns": pa.array([r.get("acked_ns") for r in rows], pa.int64()),
            "ack_status": pa.array([r.get("ack_status", "ok") for r in rows]),
            "expected_subscribers": pa.array([["sub"]] * len(rows), pa.list_(pa.string())),
            "receipts": pa.array([r["receipts"] for r in rows], pa.list_(RECEIPT)),
            "outcome": pa.array(["delivered"] * len(rows)),
            "warmup": pa.array([r.get("warmup", False) for r in rows]),
            "target_rate": pa.array([40.0] * len(rows), pa.float64()),
        }
    )


def test_delivery_segments_add_up_to_the_ledger_e2e_and_leave_out_warmup() -> None:
    rows = [
        dict(event_id="w", intended_ns=0, sent_ns=1 * MS, acked_ns=2 * MS, warmup=True,
             receipts=[{"subscriber": "sub", "received_ns": 900 * MS}]),
        dict(event_id="a", intended_ns=10 * MS, sent_ns=11 * MS, acked_ns=15 * MS,
             receipts=[{"subscriber": "sub", "received_ns": 30 * MS}, {"subscriber": "sub", "received_ns": 40 * MS}]),
        dict(event_id="b", intended_ns=20 * MS, sent_ns=20 * MS, acked_ns=21 * MS, ack_status="error",
             receipts=[{"subscriber": "sub", "received_ns": 26 * MS}]),
    ]  # fmt: skip
    d = delivery_segments(_ledger_table(rows, "s").to_pandas()).set_index("event_id")
    assert list(d.index) == ["a", "b"]  # the warm-up event is in no figure
    a = d.loc["a"]
    assert a["latency_ms"] == pytest.approx(20.0)  # the first receipt
    assert (a["send_lag_ms"], a["write_round_trip_ms"], a["after_ack_ms"]) == pytest.approx((1.0, 4.0, 15.0))
    assert d.loc["b", "latency_ms"] == pytest.approx(6.0)
    assert d.loc["b", list(SEGMENTS)].isna().all()  # no successful ack: no segments
    assert delivery_segments(None).empty


# -- the report's table ------------------------------------------------------------------------


class _Run:
    """The part of a run the overhead table reads: its directory and merged ledger."""

    def __init__(self, run_dir: Path, ledger: pd.DataFrame | None = None) -> None:
        self.run_dir = run_dir
        self.ledger = ledger

    def pairs(self) -> list:
        return []

    def expected_hops(self, stack: str, workload: str) -> list[str]:
        return []


def _arm_rows(n: int, seed: int, after_ack_scale: float = 1.0, slow_warmup: bool = False) -> list[dict]:
    """n measured events (send lag ~0.2 ms, write round trip ~5 ms, after the ack ~10 ms) plus
    50 warm-up events, which are 100 × slower when `slow_warmup`."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n + 50):
        warm = i < 50
        t0 = i * 25 * MS
        sent = t0 + int(rng.exponential(0.2) * MS)
        acked = sent + int(rng.lognormal(np.log(5.0), 0.2) * MS)
        after = rng.lognormal(np.log(10.0), 0.2) * after_ack_scale * (100 if warm and slow_warmup else 1)
        rows.append(dict(event_id=f"e{i}", intended_ns=t0, sent_ns=sent, acked_ns=acked, warmup=warm,
                         receipts=[{"subscriber": "sub", "received_ns": acked + int(after * MS)}]))  # fmt: skip
    return rows


def _phase(stack: str, tracing: bool, run_dir: Path | None, rows: list[dict] | None, repeat: int = 0) -> dict:
    label = f"{stack}-write_notify-r{repeat}" + ("" if tracing else "-notrace")
    phase_id = f"{label}-abc123"
    if run_dir is not None and rows is not None:
        folder = run_dir / PHASES_DIR / phase_id
        folder.mkdir(parents=True)
        pq.write_table(_ledger_table(rows, stack), folder / LEDGER)
    return {
        "phase": {"stack": stack, "workload": "write_notify", "repeat": repeat, "tracing": tracing, "label": label},
        "phase_id": phase_id, "status": "ok", "seconds": 1.0, "error": None, "span_files": 1,
        "run_dir": f"/nowhere/{phase_id}",  # where it ran: the run directory has moved since
        "driver": {"tracing": False} if not tracing else {},
        "figures": {"events": 100, "outcomes": {"delivered": 100}, "e2e_ms": {"p50": 15.0, "p99": 25.0}},
    }  # fmt: skip


def _ctx(run: _Run, phases: list[dict]) -> ReportContext:
    ctx = ReportContext(run, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), stacks=[], workloads=[])  # type: ignore[arg-type]  # fmt: skip
    apply_experiment(ctx, {"stacks": ["kafka", "harper"], "workloads": ["write_notify"], "phases": phases})
    return ctx


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory: pytest.TempPathFactory) -> ReportContext:
    """kafka's traced arm: after-ack segment 1.45 × longer (e2e ≈ 30 % slower); harper's traced
    arm: the untraced arm's very deliveries, with a warm-up 100 × slower (in no figure)."""
    run_dir = tmp_path_factory.mktemp("run")
    n = 2000
    phases = [
        _phase("kafka", True, run_dir, _arm_rows(n, 1, after_ack_scale=1.45)),
        _phase("kafka", False, run_dir, _arm_rows(n, 2)),
        _phase("harper", True, run_dir, _arm_rows(n, 3, slow_warmup=True)),
        _phase("harper", False, run_dir, _arm_rows(n, 3)),
    ]
    return _ctx(_Run(run_dir), phases)


def test_overhead_frame_reads_each_phase_ledger_and_flags_only_the_slower_stack(
    experiment_run: ReportContext,
) -> None:
    f = overhead_frame(experiment_run).set_index("stack")
    kafka, harper = f.loc["kafka"], f.loc["harper"]
    assert (kafka["basis"], kafka["pairs"], kafka["deliveries_on"]) == (BASIS_LEDGER, 1, 2000)
    assert 0.25 < kafka["overhead_p50"] < 0.36
    assert kafka["overhead_p50_ci_low"] <= kafka["overhead_p50"] <= kafka["overhead_p50_ci_high"]
    assert kafka["verdict_p50"] == "over target" and kafka["over_p50"]
    assert kafka["segment"] == "after-ack"
    assert 3.5 < kafka["segment_growth_ms"] < 5.5  # 0.45 × ~10 ms
    assert harper["overhead_p50"] == pytest.approx(0.0) and harper["overhead_p99"] == pytest.approx(0.0)
    assert not harper["over_p50"] and not harper["over_p99"]
    assert harper["verdict_p50"] == "under target"
    assert harper["switch"] == "generator + stack"


def test_overhead_section_flags_the_row_and_names_its_segment(experiment_run: ReportContext) -> None:
    (section,) = list(overhead_section(experiment_run))
    md = section.markdown
    row = overhead_frame(experiment_run).set_index("stack").loc["kafka"]
    lo, hi = 100 * row["overhead_p50_ci_low"], 100 * row["overhead_p50_ci_high"]
    expected = f"write_notify on kafka: p50 {100 * row['overhead_p50']:+.0f} % [{lo:+.0f}, {hi:+.0f}] over the 3 % target"
    assert expected in md, md
    assert "the after-ack segment (ack → receipt) grew most (+" in md
    assert "write_notify on harper" not in md
    lines = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| write_notify | ")}
    assert "| **over target** ⚠ |" in lines["kafka"] and "| **after-ack +" in lines["kafka"]
    assert "⚠" not in lines["harper"], lines["harper"]
    assert "paired two-level bootstrap" in md and "with one pair it holds only the within-phase noise" in md
    assert "3 % at p50, 5 % at p99" in md


def test_an_interval_reaching_its_target_is_inconclusive_and_not_flagged(tmp_path: Path) -> None:
    """The traced arm: the untraced arm's deliveries with the after-ack segment 4.5 % longer, about
    3 % at the p50 — the interval straddles the target."""
    phases = [
        _phase("kafka", True, tmp_path, _arm_rows(2000, 7, after_ack_scale=1.045)),
        _phase("kafka", False, tmp_path, _arm_rows(2000, 7)),
    ]
    row = overhead_frame(_ctx(_Run(tmp_path), phases)).iloc[0]
    assert row["overhead_p50_ci_low"] <= 0.03 < row["overhead_p50_ci_high"], row
    assert row["verdict_p50"] == "inconclusive" and not row["over_p50"]
    assert row["verdict_p99"] != "over target" and not row["over_p99"]


def test_each_untraced_phase_is_paired_with_the_traced_phase_of_its_repeat(tmp_path: Path) -> None:
    """Two repeats at different levels (drift), each traced arm the very deliveries of its
    untraced twin: paired by repeat the overhead is 0; any other pairing would show the drift."""
    phases = [
        _phase("kafka", True, tmp_path, _arm_rows(1000, 8), repeat=0),
        _phase("kafka", False, tmp_path, _arm_rows(1000, 8), repeat=0),
        _phase("kafka", True, tmp_path, _arm_rows(1000, 9, after_ack_scale=1.5), repeat=1),
        _phase("kafka", False, tmp_path, _arm_rows(1000, 9, after_ack_scale=1.5), repeat=1),
    ]
    row = overhead_frame(_ctx(_Run(tmp_path), phases)).iloc[0]
    assert (row["pairs"], row["deliveries_on"], row["deliveries_off"]) == (2, 2000, 2000)
    assert row["overhead_p50"] == pytest.approx(0.0, abs=1e-12)
    assert row["overhead_p50_ci_low"] <= 0.0 <= row["overhead_p50_ci_high"]
    assert row["verdict_p50"] == "under target"


def test_a_traced_phase_without_its_folder_is_read_from_the_merged_ledger(tmp_path: Path) -> None:
    traced = _phase("kafka", True, None, None)
    merged = _ledger_table(_arm_rows(500, 5, after_ack_scale=1.45), "kafka").to_pandas()
    merged["phase_id"] = traced["phase_id"]
    ctx = _ctx(_Run(tmp_path, merged), [traced, _phase("kafka", False, tmp_path, _arm_rows(500, 6))])
    row = overhead_frame(ctx).iloc[0]
    assert row["basis"] == BASIS_LEDGER and row["deliveries_on"] == 500
    assert row["overhead_p50"] > 0.2


def test_a_run_whose_phases_kept_no_ledger_falls_back_to_the_phase_figures(tmp_path: Path) -> None:
    phases = [_phase("kafka", True, None, None), _phase("kafka", False, None, None)]
    phases[0]["figures"]["e2e_ms"] = {"p50": 18.0, "p99": 30.0}
    ctx = _ctx(_Run(tmp_path), phases)
    row = overhead_frame(ctx).iloc[0]
    assert row["basis"] == BASIS_FIGURES
    assert row["overhead_p50"] == pytest.approx(0.2)
    assert "overhead_p50_ci_low" not in row or np.isnan(row["overhead_p50_ci_low"])
    assert not row["over_p50"]  # no interval: never flagged
    (section,) = list(overhead_section(ctx))
    assert f"Rows with basis '{BASIS_FIGURES}'" in section.markdown
    assert "⚠" not in section.markdown
