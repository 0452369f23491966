"""Latency over the run's time (`Run.phases`, `Run.latency_per_second`, the report's part):
phases from the ledger of a synthetic run with warm-up and repeats, and the per-second p50/p99
against a direct computation over the deliveries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hopscope.analysis import Run
from hopscope.analysis.report import ReportContext
from hopscope.analysis.report.delivery_sections import workload_latency_over_time
from hopscope.analysis.report.timeline_plot import cuts, latency_over_time
from hopscope.analysis.timeline import NS_PER_S, PER_SECOND_COLUMNS, phases
from hopscope.synth import SynthConfig, generate

WARMUP, REPEATS, EVENTS = 150, 3, 1800


@pytest.fixture(scope="module")
def synth_run() -> tuple[Run, pd.DataFrame]:
    cfg = SynthConfig.load(None)
    cfg.events, cfg.seed, cfg.warmup_events, cfg.warmup_extra_ms, cfg.repeats = (
        EVENTS,
        9,
        WARMUP,
        40.0,
        REPEATS,
    )
    synth = generate(cfg)
    ledger = synth.ledger.to_pandas()
    return Run.from_table(synth.table, manifest=synth.manifest, ledger=ledger), ledger


def test_deliveries_start_at_their_events_intended_send(synth_run) -> None:
    run, ledger = synth_run
    e2e = run.e2e()
    sent = ledger.set_index(["stack", "workload", "event_id"])["intended_ns"]
    expected = sent.reindex(pd.MultiIndex.from_frame(e2e[["stack", "workload", "event_id"]])).to_numpy()
    assert (e2e["start_ns"].to_numpy() == expected).all()


def test_phases_are_the_ledgers_repeats_with_their_warm_up(synth_run) -> None:
    run, ledger = synth_run
    got = run.phases()
    assert len(got) == len(run.pairs()) * REPEATS
    for (stack, workload), led in ledger.groupby(["stack", "workload"]):
        mine = got[(got["stack"] == stack) & (got["workload"] == workload)].set_index("repeat")
        for rep, rows in led.groupby("repeat"):
            p = mine.loc[rep]
            assert p["phase"] == f"r{rep}"
            assert p["start_ns"] == rows["intended_ns"].min() and p["end_ns"] == rows["intended_ns"].max()
            measured = rows[~rows["warmup"]]["intended_ns"]
            assert p["warmup_end_ns"] == measured.min()
        # the warm-up events are the first ones, in repeat 0: only its phase has a warm-up
        warm = led[led["warmup"]]["intended_ns"]
        assert mine.loc[0, "warmup_end_ns"] > warm.max() >= mine.loc[0, "start_ns"]
        assert (mine.loc[1:, "warmup_end_ns"] == mine.loc[1:, "start_ns"]).all()


def test_per_second_quantiles_match_a_direct_computation(synth_run) -> None:
    run, _ = synth_run
    e2e, table = run.e2e(), run.phases()
    got = run.latency_per_second()
    assert list(got.columns) == PER_SECOND_COLUMNS
    expected = []
    for _, p in table.iterrows():
        d = e2e[(e2e["stack"] == p["stack"]) & (e2e["workload"] == p["workload"])]
        start = d["start_ns"].to_numpy()
        inside = (start >= p["start_ns"]) & (start <= p["end_ns"])
        for k in range(int((p["end_ns"] - p["start_ns"]) // NS_PER_S) + 1):
            lo = p["start_ns"] + k * NS_PER_S
            sel = inside & (start >= lo) & (start < lo + NS_PER_S)
            values = d["e2e_ms"].to_numpy()[sel]
            if len(values):
                expected.append((p["stack"], p["workload"], p["phase"], k, lo, len(values),
                                 np.quantile(values, 0.5), np.quantile(values, 0.99)))  # fmt: skip
    want = pd.DataFrame(expected, columns=PER_SECOND_COLUMNS)
    key = ["stack", "workload", "phase", "second"]
    got, want = got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    # every measured delivery is in one second (warm-up ones reach no figure, nor this one)
    assert got["deliveries"].sum() == len(e2e)


def test_without_a_ledger_each_pair_is_one_phase() -> None:
    e2e = pd.DataFrame(
        {"stack": ["s"] * 4, "workload": ["w"] * 4, "e2e_ms": [1.0, 2.0, 3.0, 4.0],
         "start_ns": [0, NS_PER_S // 2, 3 * NS_PER_S, 3 * NS_PER_S + 1]}
    )  # fmt: skip
    table = phases(None, e2e)
    assert table[["phase", "start_ns", "end_ns", "warmup_end_ns"]].values.tolist() == [
        ["run", 0, 3 * NS_PER_S + 1, 0]
    ]


def test_report_part_draws_every_phase_and_cuts_the_gaps(synth_run) -> None:
    run, _ = synth_run
    ctx = ReportContext.from_run(run)
    fig = latency_over_time(ctx, "write_notify")
    assert fig is not None
    names = {t.name for t in fig.data}
    assert names == {f"{s} {q}" for s in ("kafka", "harper") for q in ("p50", "p99")}
    mine = ctx.phases[ctx.phases["workload"] == "write_notify"]
    warmups = (mine["warmup_end_ns"] > mine["start_ns"]).sum()
    assert warmups == 2  # repeat 0 of each stack
    assert len(fig.layout.shapes) == len(mine) + warmups
    labels = [a.text for a in fig.layout.annotations]
    assert sorted(x for x in labels if x != "warm-up") == sorted(
        f"{s} r{r}" for s in ("kafka", "harper") for r in range(3)
    )
    # synth runs the pairs an hour apart: that stretch is cut, the repeats of a stack are not
    assert len(cuts(mine)) == 1
    section = workload_latency_over_time(ctx, "write_notify")
    assert section is not None and "highest 1-s p99" in section.markdown
