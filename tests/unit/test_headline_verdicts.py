"""Known truth through the report path: the headline's figures, intervals and verdicts
(`Run.verdicts()`, the headline section), warm-up left out of every figure, the ingest sweep's
sustained rate, the merged ledger's phase identity, the console table read from the analysis,
and the quick profile's size."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hopscope.analysis.report import build_sections
from hopscope.analysis.report.context import ReportContext
from hopscope.analysis.report.headline import headline
from hopscope.analysis.report.sections import headline_section
from hopscope.analysis.run import Run
from hopscope.core.rundir import LEDGER
from hopscope.core.schema import SPAN_SCHEMA
from hopscope.experiment.study import (
    ExperimentResult,
    Phase,
    PhaseResult,
    headline_rows,
    load_profile,
    merge_ledgers,
    plan_phases,
    workload_for,
)
from hopscope.synth import SynthConfig, generate

MS = 1_000_000
VERDICT_COLUMNS = ["workload", "quantile", "lower", "ratio", "ratio_ci_low", "ratio_ci_high", "n_a", "n_b"]


def _ledger(samples: dict[str, list[np.ndarray]], workload: str = "w", warmup: int = 0) -> pd.DataFrame:
    """A merged-ledger-like table: per stack and repeat, one event per latency (ms), one expected
    subscriber; `warmup` extra events per repeat with an absurd latency, marked warm-up."""
    rows = []
    for stack, repeats in samples.items():
        for r, values in enumerate(repeats):
            lat = np.concatenate([np.full(warmup, 60_000.0), values])
            for i, v in enumerate(lat):
                t = 10**18 + i * 10 * MS
                rows.append(
                    {
                        "stack": stack, "workload": workload, "event_id": f"{stack}-{workload}-r{r}-{i}",
                        "intended_ns": t, "sent_ns": t, "expected_subscribers": ["s"],
                        "receipts": [{"subscriber": "s", "received_ns": t + int(v * MS)}],
                        "outcome": "delivered", "warmup": i < warmup, "target_rate": 100.0,
                        "repeat": r, "phase_id": f"{stack}-{workload}-r{r}-x",
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def _ledger_run(ledger: pd.DataFrame) -> Run:
    return Run.from_table(SPAN_SCHEMA.empty_table(), ledger=ledger, manifest={})


def _headline_md(run: Run) -> str:
    ctx = ReportContext.from_run(run)
    (section,) = build_sections(ctx, [headline_section])
    return section.markdown


def _row(md: str, workload: str) -> dict[str, str]:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == workload:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no headline row for {workload}")


def test_identical_stacks_give_no_clear_difference_at_every_quantile() -> None:
    rng = np.random.default_rng(11)
    repeats = [rng.lognormal(2.5, 0.6, 4000) for _ in range(3)]  # 12,000: 12 beyond p99.9
    run = _ledger_run(_ledger({"a": repeats, "b": [r.copy() for r in repeats]}))
    v = run.verdicts()
    assert list(v["quantile"]) == [0.5, 0.99, 0.999]
    assert (v["lower"] == "").all()
    assert (v["ratio_ci_low"] <= 1.0).all() and (v["ratio_ci_high"] >= 1.0).all()
    row = _row(_headline_md(run), "w")
    for label in ("p50", "p99", "p99.9"):
        assert row[f"verdict at {label}"].startswith("no clear difference (×1.00 ["), row
    assert row["a n"] == "12,000"


def test_a_stack_twice_as_slow_is_named_lower_with_a_ratio_interval_holding_two() -> None:
    rng = np.random.default_rng(12)
    fast = [rng.exponential(8.0, 3000) + 2.0 for _ in range(3)]
    slow = [2.0 * (rng.exponential(8.0, 3000) + 2.0) for _ in range(3)]
    run = _ledger_run(_ledger({"slow": slow, "fast": fast}))
    v = run.verdicts()
    assert set(VERDICT_COLUMNS) <= set(v.columns)
    v = v.set_index("quantile")
    for q in (0.5, 0.99):
        assert v.loc[q, "lower"] == "fast"
        assert v.loc[q, "ratio_ci_low"] <= 2.0 <= v.loc[q, "ratio_ci_high"]
        assert v.loc[q, "ratio_ci_low"] > 1.0
        assert (v.loc[q, "n_a"], v.loc[q, "n_b"]) == (9000, 9000)
    row = _row(_headline_md(run), "w")
    m = re.fullmatch(r"fast lower, ×([\d.]+) \[([\d.]+)–([\d.]+)\]", row["verdict at p99"])
    assert m and float(m.group(2)) <= 2.0 <= float(m.group(3)), row["verdict at p99"]
    # 9,000 samples: 9 beyond the p99.9, so neither figure nor verdict at p99.9
    assert row["fast p99.9 (ms)"] == "–" and row["slow p99.9 (ms)"] == "–"
    assert row["verdict at p99.9"] == "not shown (< 10 samples beyond)"
    assert re.fullmatch(r"[\d.]+ \[[\d.]+–[\d.]+\]", row["fast p50 (ms)"])
    assert "One figure: ledger e2e" in _headline_md(run)


def test_a_run_without_repeats_still_gets_verdicts() -> None:
    rng = np.random.default_rng(13)
    led = _ledger({"a": [rng.exponential(5.0, 3000)], "b": [rng.exponential(15.0, 3000)]})
    led = led.drop(columns=["repeat", "phase_id"])  # a bench run, or a run made before they were written
    v = _ledger_run(led).verdicts().set_index("quantile")
    assert v.loc[0.5, "lower"] == "a" and v.loc[0.5, "n_a"] == 3000


def test_warmup_events_with_absurd_latencies_reach_no_ledger_figure() -> None:
    rng = np.random.default_rng(14)
    samples = {"a": [rng.exponential(5.0, 2000) for _ in range(3)], "b": [rng.exponential(6.0, 2000)] * 3}
    clean = _ledger_run(_ledger(samples))
    warm = _ledger_run(_ledger(samples, warmup=50))
    pd.testing.assert_frame_equal(clean.estimates(), warm.estimates())
    pd.testing.assert_frame_equal(clean.verdicts(), warm.verdicts())
    assert "Warm-up: 300 warm-up event(s) excluded" in _headline_md(warm)


@pytest.fixture(scope="module")
def synth_pair() -> tuple[Run, Run]:
    """The same synthetic run twice: warm-up events on time, and 60 s late (an absurd latency)."""

    def make(extra_ms: float) -> Run:
        sr = generate(
            SynthConfig(events=1200, warmup_events=150, warmup_extra_ms=extra_ms, repeats=3, seed=3)
        )
        return Run.from_table(sr.table, manifest=sr.manifest, ledger=sr.ledger.to_pandas())

    return make(0.0), make(60_000.0)


def test_warmup_events_in_a_synthetic_run_never_reach_a_figure(synth_pair: tuple[Run, Run]) -> None:
    on_time, late = synth_pair
    assert late.e2e()["e2e_ms"].max() < 1_000 and late.hop_stats()["max_ms"].max() < 1_000
    for name in ("hop_stats", "tail_growth", "e2e", "estimates", "verdicts"):
        a, b = getattr(on_time, name)(), getattr(late, name)()
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, obj=name)
    q = late.quality_frame().set_index(["stack", "workload"])
    assert (q["warmup_events_excluded"] == 150).all()
    assert (q["warmup_deliveries_excluded"] > 0).all()
    # the warm-up traces are not "broken": only the planted breakage is
    pd.testing.assert_series_equal(
        q["deliveries_broken_path"],
        on_time.quality_frame().set_index(["stack", "workload"])["deliveries_broken_path"],
    )


def test_run_verdicts_on_a_synthetic_run(synth_pair: tuple[Run, Run]) -> None:
    _, run = synth_pair
    v = run.verdicts()
    assert list(v.columns[: len(VERDICT_COLUMNS)]) == VERDICT_COLUMNS
    assert set(v["quantile"]) == {0.5, 0.99, 0.999}
    # synth's kafka mimic is the slower in every workload, clearly at the median
    med = v[v["quantile"] == 0.5]
    assert (med["lower"] == "harper").all() and (med["ratio_ci_low"] > 1).all()
    # 1,050 measured events: no p99.9
    assert v[v["quantile"] == 0.999]["ratio"].isna().all()
    est = run.estimates()
    assert set(est["repeats"]) == {3}
    assert run.verdict_figure == "ledger e2e"


def _sweep_ledger(p99_at: dict[str, dict[float, float]]) -> pd.DataFrame:
    """A sweep per stack: at each rate 1,500 deliveries with a p99 of about the given value."""
    rows = []
    rng = np.random.default_rng(15)
    for stack, steps in p99_at.items():
        for rate, p99 in steps.items():
            lat = rng.exponential(p99 / 4.6, 1500)  # exponential: p99 = 4.6 × mean
            for i, v in enumerate(lat):
                t = 10**18 + int(i * 1e9 / rate)
                rows.append(
                    {
                        "stack": stack, "workload": "ingest", "event_id": f"{stack}-{rate}-{i}", "intended_ns": t,
                        "sent_ns": t, "expected_subscribers": ["sink"],
                        "receipts": [{"subscriber": "sink", "received_ns": t + int(v * MS)}],
                        "outcome": "delivered", "warmup": False, "target_rate": rate, "repeat": 0,
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_the_ingest_headline_states_the_rate_sustained_below_the_knee() -> None:
    # x knees at 400 ev/s (its latency 5 × the lowest rate's), y never does
    run = _ledger_run(
        _sweep_ledger({"x": {100.0: 10, 200.0: 12, 400.0: 50}, "y": {100.0: 20, 200.0: 22, 400.0: 24}})
    )
    rates = run.sweep_rates()["ingest"]
    assert rates == {"sustained": {"x": 200.0, "y": 400.0}, "compared_at": 200.0}
    v = run.verdicts().set_index("quantile")
    assert v.loc[0.5, "rate"] == 200.0 and v.loc[0.5, "lower"] == "x"
    ctx = ReportContext.from_run(run)
    h = headline(ctx, "ingest")
    assert h.compared_at == 200.0 and h.sustained["y"][0] == 400.0
    assert h.sustained["y"][1] is not None and h.sustained["y"][1].deliveries == 1500
    md = _headline_md(run)
    assert "highest offered rate sustained below the knee — x: 200 ev/s" in md
    assert "y: 400 ev/s" in md
    assert _row(md, "ingest")["offered rate"] == "200 ev/s"


# -- the experiment side -------------------------------------------------------------------------


def _phase_dir(tmp: Path, stack: str, repeat: int) -> PhaseResult:
    d = tmp / f"{stack}-r{repeat}"
    d.mkdir()
    pq.write_table(pa.table({"event_id": ["e1", "e2"], "warmup": [True, False]}), d / LEDGER)
    return PhaseResult(Phase(stack, "w", repeat, True), f"{stack}-w-r{repeat}-abc", "ok", 1.0, run_dir=str(d))


def test_merged_ledger_says_which_phase_and_repeat_each_row_came_from(tmp_path: Path) -> None:
    results = [_phase_dir(tmp_path, "a", 0), _phase_dir(tmp_path, "b", 1)]
    out = tmp_path / "run"
    out.mkdir()
    assert merge_ledgers(results, out) == 4
    led = pq.read_table(out / LEDGER).to_pandas()
    assert list(led["phase_id"]) == ["a-w-r0-abc"] * 2 + ["b-w-r1-abc"] * 2
    assert list(led["repeat"]) == [0, 0, 1, 1]
    assert list(led["warmup"]) == [True, False, True, False]


def test_the_console_table_shows_the_headline_figure_and_verdict(tmp_path: Path) -> None:
    rng = np.random.default_rng(16)
    run = _ledger_run(
        _ledger({"a": [rng.exponential(5.0, 2000)] * 3, "b": [rng.exponential(20.0, 2000)] * 3})
    )
    run.write_verdict_tables(tmp_path)
    phases = [
        PhaseResult(Phase(s, "w", r, True), f"{s}-{r}", "ok", 1.0) for s in ("a", "b") for r in range(3)
    ]
    result = ExperimentResult(tmp_path, "x", phases, 1.0, {}, None, None, None)
    rows = {r["stack"]: r for r in headline_rows(result)}
    est = run.estimates().set_index(["stack", "quantile_name"])
    assert rows["a"]["figure"] == "ledger e2e"
    assert rows["a"]["p50_ms"] == pytest.approx(est.loc[("a", "p50"), "value"])
    assert rows["a"]["p99_ci"] == pytest.approx(
        (est.loc[("a", "p99"), "ci_low"], est.loc[("a", "p99"), "ci_high"])
    )
    assert rows["a"]["p50_verdict"].startswith("a lower, ×")
    assert rows["b"]["p99_verdict"] == rows["a"]["p99_verdict"]
    # without the analysis' tables it says plainly which figure it shows
    bare = ExperimentResult(tmp_path / "none", "x", phases, 1.0, {}, None, None, None)
    assert "no interval, no verdict" in headline_rows(bare)[0]["figure"]


def test_quick_profile_runs_three_abba_repeats_sized_for_p99() -> None:
    prof = load_profile("quick")
    assert prof.repeat >= 3 and prof.overhead_repeats == 1
    plan = [p for p in plan_phases(["a", "b"], ["write_notify"], prof.repeat, True, 1) if p.tracing]
    assert [p.stack for p in plan] == ["a", "b", "b", "a", "a", "b"]
    per_event = {"write_notify": 3, "fanout": 2.5, "aggregate": 1, "ingest": 1}
    for name, k in per_event.items():
        wl = workload_for(prof, name)
        rate = 40.0 if wl.rate_sweep else wl.rate  # a sweep is compared at a step, typically 40 ev/s
        assert rate * wl.duration_s * k * prof.repeat * 0.01 >= 10, name
    full = load_profile("full")
    for name, k in per_event.items():
        wl = workload_for(full, name)
        rate = min(wl.rate_sweep) if wl.rate_sweep else wl.rate
        assert rate * wl.duration_s * k * full.repeat * 0.001 >= 10, name


def test_repeats_that_disagree_beyond_their_intervals_are_flagged_in_the_report() -> None:
    from hopscope.analysis.report.experiment_sections import apply_experiment, workload_repeats

    rng = np.random.default_rng(17)
    drifting = [rng.normal(m, 1.0, 2000) for m in (10.0, 15.0, 20.0)]
    steady = [rng.normal(15.0, 1.0, 2000) for _ in range(3)]
    ctx = ReportContext.from_run(_ledger_run(_ledger({"a": drifting, "b": steady})))
    phases = [
        {"phase": {"stack": s, "workload": "w", "repeat": r, "tracing": True, "label": f"{s}-w-r{r}"},
         "status": "ok", "figures": {"e2e_ms": {"p50": 1.0, "p99": 2.0, "p999": 3.0}}}
        for s in ("a", "b") for r in range(3)
    ]  # fmt: skip
    apply_experiment(ctx, {"stacks": ["a", "b"], "workloads": ["w"], "phases": phases})
    section = workload_repeats(ctx, "w")
    assert section is not None
    flagged = [line for line in section.markdown.splitlines() if "disagree beyond their intervals" in line]
    assert flagged and all(line.startswith("| a |") for line in flagged)
    assert "a/w: repeats disagree beyond their intervals at p50" in _headline_md(ctx.run)  # type: ignore[arg-type]


def test_with_three_stacks_each_verdict_names_the_other_stack(tmp_path: Path) -> None:
    rng = np.random.default_rng(17)
    run = _ledger_run(
        _ledger({s: [rng.exponential(m, 2000)] * 3 for s, m in (("a", 5.0), ("b", 20.0), ("c", 80.0))})
    )
    run.write_verdict_tables(tmp_path)
    phases = [
        PhaseResult(Phase(s, "w", r, True), f"{s}-{r}", "ok", 1.0) for s in ("a", "b", "c") for r in range(3)
    ]
    rows = {
        r["stack"]: r
        for r in headline_rows(ExperimentResult(tmp_path, "x", phases, 1.0, {}, None, None, None))
    }
    parts = rows["b"]["p50_verdict"].split("; ")
    assert [p.split(":")[0] for p in parts] == ["vs a", "vs c"]
    assert parts[0].startswith("vs a: a lower, ×") and parts[1].startswith("vs c: b lower, ×")


def _three_stack_headline(scales: dict[str, float], seed: int = 18) -> str:
    """The headline (markdown) of a run whose stacks' latencies are exponential with these means,
    `kn` declared as `k` with its glue in another language."""
    rng = np.random.default_rng(seed)
    run = _ledger_run(
        _ledger({s: [rng.exponential(m, 2000) + 1.0 for _ in range(3)] for s, m in scales.items()})
    )
    ctx = ReportContext.from_run(run)
    ctx.experiment = {"stack_info": {"kn": {"control": {"of": "k", "varies": "its glue in Node.js"}}}}
    (section,) = build_sections(ctx, [headline_section])
    return section.markdown


def test_with_three_stacks_the_headline_gives_every_pair_and_the_lowest_stack() -> None:
    md = _three_stack_headline({"k": 5.0, "kn": 20.0, "h": 80.0})
    cell = _row(md, "w")["verdict at p50"]
    # every pair once, in report order, led by the stack lower than both others
    assert cell.startswith("k lowest — "), cell
    pairs = cell.removeprefix("k lowest — ").split("; ")
    assert [p.split(":")[0] for p in pairs] == ["h vs k", "h vs kn", "k vs kn"], pairs
    assert pairs[0].startswith("h vs k: k lower, ×") and pairs[1].startswith("h vs kn: kn lower, ×")
    assert pairs[2].startswith("k vs kn: k lower, ×"), pairs


def test_no_lowest_stack_is_named_when_two_stacks_tie_below_the_third() -> None:
    cell = _row(_three_stack_headline({"k": 5.0, "kn": 5.0, "h": 80.0}), "w")["verdict at p50"]
    assert "lowest" not in cell and "no clear difference" in cell, cell


def test_a_control_whose_verdict_holds_says_it_does_not_depend_on_the_change() -> None:
    md = _three_stack_headline({"k": 5.0, "kn": 7.0, "h": 80.0})
    (line,) = [t for t in md.split("\n\n") if t.startswith("Control kn")]
    assert line.startswith(
        "Control kn (k with its glue in Node.js), w: the k-vs-h verdict does not depend on it ("
    ), line
    assert "p50 — k: k lower, ×" in line and "; kn: kn lower, ×" in line


def test_a_control_that_flips_the_verdict_says_where_it_depends_on_the_change() -> None:
    md = _three_stack_headline({"k": 5.0, "kn": 300.0, "h": 40.0})
    (line,) = [t for t in md.split("\n\n") if t.startswith("Control kn")]
    assert "the k-vs-h verdict depends on it at p50, p99 (" in line, line
    assert "p50 — k: k lower" in line and "kn: h lower" in line


def test_a_control_where_no_verdict_separates_the_stacks_claims_nothing() -> None:
    md = _three_stack_headline({"k": 10.0, "kn": 10.0, "h": 10.0})
    (line,) = [t for t in md.split("\n\n") if t.startswith("Control kn")]
    assert "is no clear difference with either, so this run cannot tell whether it depends on it" in line
    assert "does not depend" not in line
