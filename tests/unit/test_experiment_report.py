"""`hopscope run`'s pieces without services: the interleaved plan, ledger figures, the tool
output parsers, and the experiment report sections (repeats flag, sweep knee, overhead,
fairness, cross-check ratios) on hand-built experiment documents with known answers."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from hopscope.analysis.report import build_sections
from hopscope.analysis.report.analyze import analyze_run
from hopscope.analysis.report.context import ReportContext
from hopscope.analysis.report.experiment_sections import (
    _lookup,
    apply_experiment,
    crosscheck_frame,
    crosscheck_section,
    fairness_frame,
    like_for_like_finding,
    like_for_like_frame,
    overhead_frame,
    repeat_frame,
    sweep_frame,
    workload_point_reads,
)
from hopscope.analysis.report.tables import fmt_ms
from hopscope.core.attributes import LOADGEN_SPAN_NAME
from hopscope.core.rundir import EXPERIMENT
from hopscope.experiment.crosschecks import (
    CrossCheckError,
    mean_ratio_with_interval,
    parse_end_to_end_latency,
    parse_pgbench_log,
    ratio_with_interval,
)
from hopscope.experiment.phase_stats import phase_figures
from hopscope.experiment.study import (
    ProfileError,
    fairness_expected,
    load_profile,
    plan_phases,
    resolve_stacks,
    stack_info,
)
from hopscope.pipelines.stack import Stack, discover_stacks, load_stack, read_stack
from hopscope.synth import SynthConfig, generate, write_run

ROOT = Path(__file__).resolve().parents[2]

# -- plan ------------------------------------------------------------------------------------


def test_plan_interleaves_stacks_and_flips_the_order_each_repeat() -> None:
    plan = plan_phases(["kafka", "harper"], ["write_notify", "ingest"], 2, True, 1)
    assert [p.label for p in plan] == [
        "kafka-write_notify-r0", "kafka-write_notify-r0-notrace",
        "harper-write_notify-r0", "harper-write_notify-r0-notrace",
        "kafka-ingest-r0", "kafka-ingest-r0-notrace", "harper-ingest-r0", "harper-ingest-r0-notrace",
        "harper-write_notify-r1", "kafka-write_notify-r1", "harper-ingest-r1", "kafka-ingest-r1",
    ]  # fmt: skip


def test_profiles_load_and_bad_profile_names_its_field(tmp_path: Path) -> None:
    for name in ("quick", "full", "smoke"):
        prof = load_profile(name)
        assert set(prof.workloads) == {"write_notify", "fanout", "aggregate", "ingest"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrepeat: 0\nworkloads: {ingest: {}}\n")
    with pytest.raises(ProfileError, match=r"bad\.yaml: field repeat"):
        load_profile(bad)
    with pytest.raises(ProfileError, match=r"known profiles: .*quick"):
        load_profile("nope")


# -- ledger figures ----------------------------------------------------------------------------


def _ledger(path: Path, rows: list[dict]) -> Path:
    receipt = pa.struct([("subscriber", pa.string()), ("received_ns", pa.int64())])
    table = pa.table(
        {
            "stack": pa.array([r.get("stack", "kafka") for r in rows]),
            "workload": pa.array([r["workload"] for r in rows]),
            "event_id": pa.array([r["event_id"] for r in rows]),
            "intended_ns": pa.array([r["intended_ns"] for r in rows], pa.int64()),
            "sent_ns": pa.array([r["intended_ns"] for r in rows], pa.int64()),
            "acked_ns": pa.array([r.get("acked_ns") for r in rows], pa.int64()),
            "ack_status": pa.array([r.get("ack_status", "ok") for r in rows]),
            "expected_subscribers": pa.array([r["expected"] for r in rows], pa.list_(pa.string())),
            "receipts": pa.array([r["receipts"] for r in rows], pa.list_(receipt)),
            "outcome": pa.array([r["outcome"] for r in rows]),
            "warmup": pa.array([r.get("warmup", False) for r in rows]),
            "target_rate": pa.array([r.get("rate", 100.0) for r in rows], pa.float64()),
        }
    )
    pq.write_table(table, path)
    return path


def test_phase_figures_take_first_expected_receipt_after_warmup(tmp_path: Path) -> None:
    ms = 1_000_000
    rows = [
        # warm-up: excluded even though it is slow
        dict(workload="w", event_id="e0", intended_ns=0, expected=["a"], warmup=True,
             receipts=[{"subscriber": "a", "received_ns": 900 * ms}], outcome="delivered"),
        # duplicate receipt: the first one counts; unexpected subscriber "z" ignored
        dict(workload="w", event_id="e1", intended_ns=10 * ms, expected=["a", "b"],
             receipts=[{"subscriber": "a", "received_ns": 14 * ms}, {"subscriber": "a", "received_ns": 50 * ms},
                       {"subscriber": "b", "received_ns": 16 * ms}, {"subscriber": "z", "received_ns": 11 * ms}],
             outcome="duplicated"),
        dict(workload="w", event_id="e2", intended_ns=20 * ms, expected=["a", "b"],
             receipts=[{"subscriber": "a", "received_ns": 28 * ms}], outcome="lost"),
        dict(workload="point_read", event_id="r1", intended_ns=0, expected=[], receipts=[],
             acked_ns=3 * ms, outcome="delivered"),
    ]  # fmt: skip
    fig = phase_figures(_ledger(tmp_path / "l.parquet", rows), "w")
    assert fig["events"] == 2
    assert fig["outcomes"] == {"duplicated": 1, "lost": 1}
    assert fig["e2e_ms"]["count"] == 3
    assert fig["e2e_ms"]["p50"] == pytest.approx(np.percentile([4, 6, 8], 50))
    assert fig["e2e_ms"]["max"] == pytest.approx(8)
    assert fig["point_read_ms"]["p50"] == pytest.approx(3)
    assert "sweep" not in fig


def test_sweep_figures_per_offered_rate(tmp_path: Path) -> None:
    ms = 1_000_000
    rows = []
    for i in range(20):
        rate = 100.0 if i < 10 else 200.0
        lat = 5 if rate == 100.0 else 50
        rows.append(dict(workload="ingest", event_id=f"e{i}", intended_ns=i * 10 * ms, expected=["sink"], rate=rate,
                         receipts=[{"subscriber": "sink", "received_ns": i * 10 * ms + lat * ms}], outcome="delivered"))  # fmt: skip
    fig = phase_figures(_ledger(tmp_path / "l.parquet", rows), "ingest")
    assert [s["target_rate"] for s in fig["sweep"]] == [100.0, 200.0]
    assert [s["p50_ms"] for s in fig["sweep"]] == pytest.approx([5, 50])


# -- tool output -------------------------------------------------------------------------------


def test_parse_end_to_end_latency_summary() -> None:
    out = "0\t832.2\nAvg latency: 27.4663 ms\nPercentiles: 50th = 16, 99th = 103, 99.9th = 832\n"
    assert parse_end_to_end_latency(out) == {"mean_ms": 27.4663, "p50_ms": 16, "p99_ms": 103, "p999_ms": 832}
    with pytest.raises(CrossCheckError, match="no summary"):
        parse_end_to_end_latency("nothing useful")


def test_parse_pgbench_log_names_bad_line() -> None:
    assert parse_pgbench_log("0 1 2160 0 1 2\n0 2 skipped 0 1 2\n0 3 4000 0 1 2\n").tolist() == [2.16, 4.0]
    with pytest.raises(CrossCheckError, match=r"x\.log: line 2: field 3"):
        parse_pgbench_log("0 1 2160 0 1 2\n0 2 oops 0 1 2\n", "x.log")


# -- report sections -----------------------------------------------------------------------------


class _NoRun:
    def pairs(self) -> list:
        return []

    def expected_hops(self, stack: str, workload: str) -> list[str]:
        return []


def _phase(stack, workload, repeat, tracing, p50, p99, status="ok", driver=None, sweep=None, delivered=1.0):
    return {
        "phase": {"stack": stack, "workload": workload, "repeat": repeat, "tracing": tracing,
                  "label": f"{stack}-{workload}-r{repeat}" + ("" if tracing else "-notrace")},
        "status": status, "seconds": 1.0, "error": None if status == "ok" else "boom", "span_files": 1,
        "driver": driver or {},
        "figures": {"events": 100, "outcomes": {"delivered": round(100 * delivered)},
                    "e2e_ms": {"p50": p50, "p99": p99, "p999": p99 * 1.1}, **({"sweep": sweep} if sweep else {})},
    }  # fmt: skip


def _ctx(
    experiment: dict, growth: pd.DataFrame | None = None, hops: pd.DataFrame | None = None
) -> ReportContext:
    ctx = ReportContext(
        _NoRun(),  # type: ignore[arg-type]
        hops if hops is not None else pd.DataFrame(),
        pd.DataFrame(),
        growth if growth is not None else pd.DataFrame(),
        pd.DataFrame(),
        stacks=[],
        workloads=[],
    )
    apply_experiment(ctx, experiment)
    return ctx


def test_repeats_disagreeing_by_more_than_ten_percent_are_flagged() -> None:
    exp = {"stacks": ["kafka", "harper"], "workloads": ["w"], "phases": [
        _phase("kafka", "w", 0, True, 10.0, 100.0), _phase("kafka", "w", 1, True, 10.5, 150.0),
        _phase("harper", "w", 0, True, 20.0, 40.0), _phase("harper", "w", 1, True, 21.0, 41.0),
        _phase("harper", "w", 2, True, 99.0, 99.0, status="failed"),
    ]}  # fmt: skip
    f = repeat_frame(_ctx(exp), "w").set_index(["stack", "figure"])
    assert f.loc[("kafka", "p50"), "spread"] == pytest.approx(0.5 / 10.25)
    assert f.loc[("kafka", "p50"), "flag"] == "ok"
    assert f.loc[("kafka", "p99"), "flag"] == "repeats disagree > 10 %"
    assert f.loc[("harper", "p99"), "repeats"] == 2  # the failed repeat is not a figure
    assert f.loc[("harper", "p99"), "flag"] == "ok"


def test_sweep_knee_is_the_first_rate_whose_p99_quadruples_or_p50_doubles() -> None:
    steps = [
        {"target_rate": r, "events": 100, "delivered": 100, "achieved_rate": r, "p50_ms": p50, "p99_ms": p99, "p999_ms": p99}
        for r, p50, p99 in ((100.0, 1.0, 10.0), (200.0, 1.2, 35.0), (400.0, 1.9, 39.0), (800.0, 1.5, 41.0))
    ]  # fmt: skip
    short = [dict(s) for s in steps]
    short[1]["delivered"] = 80  # harper falls short already at 200 ev/s
    exp = {"stacks": ["kafka", "harper"], "workloads": ["ingest"], "phases": [
        _phase("kafka", "ingest", 0, True, 1, 1, sweep=steps), _phase("harper", "ingest", 0, True, 1, 1, sweep=short)]}  # fmt: skip
    f = sweep_frame(_ctx(exp), "ingest")
    knees = f[f["knee"] == "knee"].set_index("stack")["target_rate"].to_dict()
    assert knees == {"kafka": 800.0, "harper": 200.0}  # 41 > 4 x 10 at p99; harper short at 200
    p50_doubles = [dict(s) for s in steps]
    p50_doubles[2]["p50_ms"] = 2.5  # a queue at 400 ev/s, the tail still under 4x
    exp["phases"][0] = _phase("kafka", "ingest", 0, True, 1, 1, sweep=p50_doubles)
    f = sweep_frame(_ctx(exp), "ingest")
    assert f[(f["knee"] == "knee") & (f["stack"] == "kafka")]["target_rate"].tolist() == [400.0]


def test_overhead_pairs_traced_and_untraced_of_the_same_repeat() -> None:
    exp = {"stacks": ["kafka"], "workloads": ["w"], "phases": [
        _phase("kafka", "w", 0, True, 12.0, 60.0), _phase("kafka", "w", 0, False, 10.0, 50.0, driver={"tracing": False}),
        _phase("kafka", "w", 1, True, 500.0, 900.0),  # no untraced twin: not part of the A/B
    ]}  # fmt: skip
    row = overhead_frame(_ctx(exp)).iloc[0]
    assert row["overhead_p50_ms"] == pytest.approx(2.0)
    assert row["overhead_p50"] == pytest.approx(0.2)
    assert row["overhead_p99"] == pytest.approx(0.2)
    assert row["switch"] == "generator + stack"


def test_lookup_handles_dotted_keys_and_lists() -> None:
    doc = {"topics": [{"min.insync.replicas": 2}, {"min.insync.replicas": 1}], "producer": {"acks": "all"}}
    assert _lookup(doc, "topics[].min.insync.replicas") == [2, 1]
    assert _lookup(doc, "producer.acks") == ["all"]
    assert _lookup(doc, "producer.linger.ms") == []


def test_fairness_flags_a_mismatch_and_a_missing_read_back() -> None:
    good = {"topics": [{"replication_factor": 3, "min.insync.replicas": 2}], "producer": {"acks": "all"}}
    bad = {"topics": [{"replication_factor": 1, "min.insync.replicas": 2}], "producer": {"acks": "all"}}
    exp = {"stacks": ["kafka"], "workloads": ["w"], "fairness_expected": fairness_expected(resolve_stacks(["kafka", "harper"])), "phases": [
        _phase("kafka", "w", 0, True, 1, 1, driver=good), _phase("kafka", "w", 1, True, 1, 1, driver=bad)]}  # fmt: skip
    f = fairness_frame(_ctx(exp)).set_index("control")
    assert f.loc["replication factor", "kafka"] == "1, 3"
    assert f.loc["replication factor", "matches"] == "NO"
    assert f.loc["min.insync.replicas", "matches"] == "yes"
    assert f.loc["compression", "matches"] == "not read back"
    assert "Harper nodes" not in f.index  # no harper stack in this run


def _declared_checks(stack: Stack) -> dict[str, dict]:
    """What the experiment stores beside each result of the stack's checks (from its declaration)."""
    return {c.result_name: {"stack": stack.name, **c.report_info()} for c in stack.spec.crosschecks}


def test_crosscheck_ratio_is_traced_over_tool() -> None:
    kafka = load_stack("kafka")
    info = _declared_checks(kafka)
    growth = pd.DataFrame([
        {"stack": "kafka", "workload": w, "hop": h, "order": 2, "p50_ms": p50, "p99_ms": 5 * p50, "p999_ms": 50.0}
        for w, h, p50 in (("ingest", "wait:ingest.consume", 99.0), ("fanout", "wait:router.consume", 8.0))
    ])  # fmt: skip
    hops = pd.DataFrame([{"stack": "kafka", "workload": "write_notify", "hop": "client.insert", "order": 0,
                          "p50_ms": 3.0, "p99_ms": 9.0}])  # fmt: skip
    exp = {"stacks": ["kafka"], "workloads": ["fanout"], "phases": [], "crosschecks": {
        "kafka_end_to_end": {"status": "ok", "p50_ms": 4.0, "p99_ms": 20.0, **info["kafka_end_to_end"]},
        "pgbench": {"status": "ok", "p50_ms": 1.5, "p99_ms": 3.0, **info["pgbench"]}}}  # fmt: skip
    f = crosscheck_frame(_ctx(exp, growth, hops)).set_index("check")
    # the shipped declaration gives the labels and traced figures the report always had
    assert list(f.index) == ["Kafka EndToEndLatency", "pgbench one-row INSERT"]
    e2e = f.loc["Kafka EndToEndLatency"]
    assert e2e["traced_hop"] == "kafka/fanout: produce → router.consume (partial sum)"  # the first candidate
    assert (e2e["ratio_p50"], e2e["ratio_p99"]) == pytest.approx((2.0, 2.0))
    pg = f.loc["pgbench one-row INSERT"]
    assert pg["traced_hop"] == "kafka/write_notify: client.insert (INSERT + commit)"
    assert (pg["traced_p50_ms"], pg["ratio_p50"], pg["ratio_p99"]) == pytest.approx((3.0, 2.0, 3.0))
    # no fanout data: the next declared candidate; a failed tool keeps its label and says why
    exp["crosschecks"]["pgbench"] = {"status": "failed", "error": "pgbench not found", **info["pgbench"]}
    f = crosscheck_frame(_ctx(exp, growth[growth["workload"] == "ingest"], hops)).set_index("check")
    assert (
        f.loc["Kafka EndToEndLatency", "traced_hop"] == "kafka/ingest: produce → ingest.consume (partial sum)"
    )
    assert f.loc["Kafka EndToEndLatency", "traced_p50_ms"] == pytest.approx(99.0)
    assert f.loc["pgbench one-row INSERT", "status"] == "failed"
    assert f.loc["pgbench one-row INSERT", "note"] == "pgbench not found"


def _pair(tool: float, untraced: float, traced: float, untraced_ci: list[float]) -> dict:
    return {
        "mode": "closed loop", "tool": {"p50_ms": tool}, "untraced_client": {"p50_ms": untraced},
        "traced": {"p50_ms": traced}, "p50_ratio": traced / tool, "p50_ratio_ci": [traced / tool - 0.02, traced / tool + 0.02],
        "untraced_p50_ratio": untraced / tool, "untraced_p50_ratio_ci": untraced_ci, "tolerance": 0.1,
        "agrees": abs(traced / tool - 1) <= 0.1, "p50_client_ms": untraced - tool, "p50_tracing_ms": traced - untraced,
    }  # fmt: skip


def test_like_for_like_names_the_side_a_disagreement_comes_from() -> None:
    assert like_for_like_finding(_pair(0.40, 0.41, 0.42, [1.0, 1.05])) == "agree within 10%"
    tracing = like_for_like_finding(_pair(0.35, 0.36, 0.54, [1.00, 1.06]))
    assert tracing.startswith("the untraced client agrees with the tool") and "+0.180 ms" in tracing
    client = like_for_like_finding(_pair(0.35, 0.50, 0.60, [1.40, 1.46]))
    assert client == "the client itself differs from the tool (+0.150 ms at p50); tracing adds +0.100 ms"
    pg = {"status": "ok", "label": "pgbench one-row INSERT", "p50_ms": 1.0, "p99_ms": 2.0,
          "like_for_like": _pair(0.35, 0.36, 0.54, [1.00, 1.06])}  # fmt: skip
    ctx = _ctx({"stacks": ["kafka"], "workloads": [], "phases": [], "crosschecks": {"pgbench": pg}})
    row = like_for_like_frame(ctx).iloc[0]
    assert (row["traced_ratio"], row["agrees"]) == ("1.54× [1.52–1.56]", False)
    (section,) = crosscheck_section(ctx)
    assert "Like for like" in section.markdown and "tracing adds (+0.180 ms at p50)" in section.markdown


def test_a_pair_compared_in_the_mean_is_labelled_so() -> None:
    """The Kafka pair compares means (the tool prints whole-ms percentiles): the table and the
    finding say which statistic, with the generic keys a current run writes."""
    pair = {
        "mode": "closed loop", "statistic": "mean", "tool": {"mean_ms": 2.0}, "untraced_client": {"mean_ms": 2.1},
        "traced": {"mean_ms": 2.6}, "ratio": 1.3, "ratio_ci": [1.2, 1.4], "untraced_ratio": 1.05,
        "untraced_ratio_ci": [1.0, 1.08], "tolerance": 0.1, "agrees": False, "client_ms": 0.1, "tracing_ms": 0.5,
    }  # fmt: skip
    kafka = {"status": "ok", "label": "end to end", "p50_ms": 2.0, "p99_ms": 5.0, "like_for_like": pair}
    ctx = _ctx({"stacks": ["kafka"], "workloads": [], "phases": [], "crosschecks": {"e2e": kafka}})
    row = like_for_like_frame(ctx).iloc[0]
    assert (row["statistic"], row["tool_ms"], row["traced_ms"]) == ("mean", 2.0, 2.6)
    assert row["finding"].endswith("traced figure is longer by what tracing adds (+0.500 ms in the mean)")


def test_the_mean_ratio_interval_holds_our_spread_and_the_tools() -> None:
    rng = np.random.default_rng(5)
    ours = 2.0 * rng.lognormal(0.0, 0.3, 4000)
    ratio, (lo, hi) = mean_ratio_with_interval(ours, [0.98, 1.02])
    assert ratio == pytest.approx(ours.mean(), rel=1e-9)
    assert lo < ours.mean() / 1.02 < ours.mean() / 0.98 < hi  # at least the tool's own spread
    assert lo > 0.9 * ours.mean() / 1.02 and hi < 1.1 * ours.mean() / 0.98  # and not much more


def test_the_ratio_interval_holds_the_true_ratio() -> None:
    rng = np.random.default_rng(3)
    base = rng.lognormal(0.0, 0.3, 4000)
    r = ratio_with_interval(2.0 * rng.lognormal(0.0, 0.3, 4000), base)
    assert r["ci_low"] < 2.0 < r["ci_high"] and r["ci_high"] - r["ci_low"] < 0.2
    same = ratio_with_interval(rng.lognormal(0.0, 0.3, 4000), base)
    assert same["ci_low"] < 1.0 < same["ci_high"]


def test_a_run_made_before_the_declarations_were_stored_still_renders() -> None:
    """An old experiment.json (no stack/label/traced beside a result, no stack_info): each check
    under its name with no traced figure, the point reads under the stacks' names."""
    growth = pd.DataFrame([{"stack": "kafka", "workload": "fanout", "hop": "wait:router.consume", "order": 2,
                            "p50_ms": 8.0, "p99_ms": 40.0, "p999_ms": 50.0}])  # fmt: skip
    reads = {"point_read_ms": {"p50": 2.0, "p99": 4.0, "p999": 5.0}}
    exp = {"stacks": ["kafka", "harper"], "workloads": ["aggregate"], "phases": [
        {**_phase(s, "aggregate", 0, True, 1, 2), "figures": reads} for s in ("kafka", "harper")],
        "crosschecks": {"kafka_end_to_end": {"status": "ok", "p50_ms": 4.0, "p99_ms": 20.0}}}  # fmt: skip
    ctx = _ctx(exp, growth)
    row = crosscheck_frame(ctx).iloc[0]
    assert (row["check"], row["traced_hop"]) == ("kafka_end_to_end", "no traced data")
    section = workload_point_reads(ctx, "aggregate")
    assert section is not None
    assert "median over repeats: kafka, harper; ratio = kafka ÷ harper" in section.markdown


NATS_STACK = """
name: nats
description: NATS JetStream, a made-up stack of this test
driver: driver:NatsDriver
fairness:
  - {control: stream replicas, expected: "3", read_back: stream.replicas}
crosschecks:
  - bare_tool
  - check: nats_bench
    label: nats bench (JetStream publish → consume)
    traced:
      measure: partial_sum
      candidates:
        - {workload: fanout, hop: "wait:subscriber.receive"}
        - {workload: write_notify, hop: "wait:subscriber.receive"}
      what: "publish → {hop}"
  - check: checks:publish_only
    label: one publish, acked
    traced: {measure: hop, candidates: [{workload: write_notify, hop: client.publish}]}
labels:
  point_read: NATS KV get
  read_back: JetStream stream info
workloads:
  write_notify:
    hops: [{name: client.publish}, {name: "wait:subscriber.receive"}, {name: subscriber.receive}]
  fanout:
    hops: [{name: client.publish}, {name: "wait:subscriber.receive"}, {name: subscriber.receive}]
"""


def test_a_new_stack_brings_its_own_crosschecks_and_labels(tmp_path: Path) -> None:
    """A stack the code has never heard of ("nats", declared in a folder of this test): its run
    directory's report compares each check with the declared hop / partial sum and uses the
    declared labels — no change in the analysis."""
    folder = tmp_path / "nats"
    folder.mkdir()
    (folder / "stack.yaml").write_text(NATS_STACK)
    nats = read_stack(folder)
    run_dir = tmp_path / "run"
    const = lambda ms: {"kind": "constant", "value_ms": ms}  # noqa: E731
    cfg = SynthConfig.from_dict({
        "events": 200, "seed": 3,
        "breakage": {"orphan_rate": 0, "missing_hop_rate": 0, "duplicate_rate": 0, "skew_rate": 0, "malformed_lines": 0},
        "pairs": [{"stack": "nats", "workload": "write_notify", "steps": [  # fanout: no spans, the 2nd candidate counts
            {"type": "span", "hop": "client.publish", "service": "c", "kind": "PRODUCER", "dist": const(2)},
            {"type": "wait", "dist": const(3)},
            {"type": "span", "hop": "subscriber.receive", "service": "s", "kind": "CONSUMER", "dist": const(1)}]}],
    })  # fmt: skip
    write_run(generate(cfg), run_dir, cfg)
    info = _declared_checks(nats)
    phase = _phase("nats", "write_notify", 0, True, 6, 7, driver={"stream": {"replicas": 3}})
    phase["figures"]["point_read_ms"] = {"p50": 0.5, "p99": 0.9, "p999": 1.0}
    experiment = {
        "stacks": ["nats"], "workloads": ["write_notify"], "profile": "quick", "repeat": 1, "phases": [phase],
        "crosschecks": {
            "bare_tool": {"status": "ok", "p50_ms": 1.0, "p99_ms": 2.0, **info["bare_tool"]},
            "nats_bench": {"status": "ok", "p50_ms": 2.5, "p99_ms": 4.0, **info["nats_bench"]},
            "publish_only": {"status": "ok", "p50_ms": 1.0, "p99_ms": 1.0, **info["publish_only"]},
        },
        "fairness_expected": fairness_expected([nats]),
        "stack_info": stack_info([nats]),
    }  # fmt: skip
    (run_dir / EXPERIMENT).write_text(json.dumps(experiment))
    result = analyze_run(run_dir, console=Console(quiet=True))
    md = (run_dir / "report.md").read_text()

    growth = result.run.tail_growth().set_index("hop")
    hops = result.run.hop_stats().set_index("hop")
    partial = growth.loc["wait:subscriber.receive"]  # intended send → the subscriber's start
    assert partial["p50_ms"] == pytest.approx(5.0, abs=0.3)
    table = md.split("## Independent cross-checks", 1)[1].split("<a id=", 1)[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert rows["bare_tool"].endswith("| no traced data |")  # no label, no traced figure declared
    bench = rows["nats bench (JetStream publish → consume)"].split(" | ")
    assert bench[2:5] == [fmt_ms(2.5), fmt_ms(partial["p50_ms"]), f"{partial['p50_ms'] / 2.5:.2f}×"]
    assert bench[6] == fmt_ms(partial["p99_ms"])
    assert bench[-1] == "nats/write_notify: publish → subscriber.receive |"
    publish = rows["one publish, acked"].split(" | ")
    assert publish[3] == fmt_ms(hops.loc["client.publish", "p50_ms"]) == "2.00"
    assert publish[-1] == "nats/write_notify: client.publish |"  # the default wording of a hop
    assert "median over repeats: nats: NATS KV get" in md
    assert "read back from the running services (JetStream stream info) for the phases" in md


def test_the_analysis_names_no_stack() -> None:
    """Adding a stack is one folder: no code of the analysis (its names and literals, docstrings
    and comments aside) names a stack or a stack's hop."""
    names = set(discover_stacks())
    hop_names = {h.name for s in discover_stacks().values() for w in s.spec.workloads.values()
                 for h in (*w.hops, *w.point_read_hops)}  # fmt: skip
    found = []
    for path in sorted((ROOT / "analysis").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value.lower()
                words = set(re.findall(r"\w+", text)) | set(re.findall(r"[^\W_]+", text))
                hit = (words & names) | {h for h in hop_names if h != LOADGEN_SPAN_NAME and h in node.value}
            elif isinstance(node, ast.Name | ast.Attribute | ast.FunctionDef | ast.ClassDef):
                ident = str(
                    getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "name", "")
                )
                hit = names & {ident.lower(), *ident.lower().split("_")}
            else:
                continue
            if hit:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {sorted(hit)}")
    assert not found, found


def test_failed_phase_is_named_in_the_report() -> None:
    exp = {"stacks": ["kafka", "harper"], "workloads": ["w"], "profile": "smoke", "repeat": 1, "phases": [
        _phase("kafka", "w", 0, True, 1, 2), _phase("harper", "w", 0, True, 1, 2, status="failed")]}  # fmt: skip
    from hopscope.analysis.report.experiment_sections import run_status_section

    (section,) = build_sections(_ctx(exp), [run_status_section])
    assert "FAILED harper-w-r0: boom" in section.markdown
    assert "1 ok, 1 failed" in section.markdown
