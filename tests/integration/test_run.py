"""`hopscope run` end to end on the real services: the smoke profile (every workload on both
stacks, two repeats, the tracing-off A/B, the cross-checks) into one run directory.

The run directory is kept at `runs/artifacts/integration-run/` (the browser test opens its
report when it exists). Checks: every phase ran; every ledger is complete (one row per
planned event, each with an outcome, nearly all delivered); the merged run has spans and
per-hop statistics for both stacks in every workload; the report has its sections with data
for each stack; the fairness values read back from the services match the configuration.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from hopscope.deploy.base import Context
from hopscope.experiment.study import load_profile, plan_phases, resolve_stacks, runnable_phases

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = REPO / "runs" / "artifacts" / "integration-run"
#: the stacks that run every workload (kafka-node runs write_notify only in the smoke profile)
STACKS = ["kafka", "harper", "postgres"]
WORKLOADS = ["write_notify", "fanout", "aggregate", "ingest"]
#: each discovered stack's workloads in the smoke profile
RUNS = {"kafka": WORKLOADS, "harper": WORKLOADS, "postgres": WORKLOADS, "kafka-node": ["write_notify"]}
#: Smoke rates are low (50 ev/s); a healthy stack delivers essentially everything.
MIN_DELIVERED = 0.95


@pytest.fixture(scope="module")
def run_dir(deployed: Context) -> Path:
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
    RUN_DIR.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hopscope.cli", "run", "--profile", "smoke", "--out", str(RUN_DIR)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    (RUN_DIR / "run.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"hopscope run exited {done.returncode}; tail:\n{done.stderr[-4000:]}"
    return RUN_DIR


@pytest.fixture(scope="module")
def experiment(run_dir: Path) -> dict:
    return json.loads((run_dir / "experiment.json").read_text())


def test_every_planned_phase_ran_and_succeeded(experiment: dict) -> None:
    profile = load_profile("smoke")
    stacks = resolve_stacks(None)
    assert [s.name for s in stacks] == list(RUNS)
    plan = plan_phases(list(RUNS), WORKLOADS, profile.repeat, profile.overhead_ab, profile.overhead_repeats)
    plan, _skipped = runnable_phases(plan, stacks, profile)
    assert {(p.stack, p.workload) for p in plan} == {(s, w) for s, ws in RUNS.items() for w in ws}
    ran = [p["phase"]["label"] for p in experiment["phases"]]
    assert ran == [p.label for p in plan]
    failed = {p["phase"]["label"]: p["error"] for p in experiment["phases"] if p["status"] != "ok"}
    assert not failed, failed


def test_ledgers_are_complete(run_dir: Path, experiment: dict) -> None:
    traced_rows = 0
    for p in experiment["phases"]:
        led = pq.read_table(Path(p["run_dir"]) / "ledger.parquet").to_pandas()
        assert len(led) == p["load"]["target_events"], p["phase"]["label"]
        assert led["outcome"].notna().all(), p["phase"]["label"]
        main = led[led["workload"] != "point_read"]
        delivered = (main["outcome"] == "delivered").mean()
        assert delivered >= MIN_DELIVERED, f"{p['phase']['label']}: only {delivered:.1%} delivered"
        if p["phase"]["tracing"]:
            traced_rows += len(led)
    merged = pq.read_table(run_dir / "ledger.parquet")
    assert merged.num_rows == traced_rows
    assert set(merged.column("stack").to_pylist()) == set(RUNS)


def test_spans_and_hop_stats_for_both_stacks_in_every_workload(run_dir: Path, experiment: dict) -> None:
    for p in experiment["phases"]:
        if p["phase"]["tracing"]:
            assert p["span_files"] > 0, f"{p['phase']['label']}: no span file gathered from the collector"
    hops = pd.read_parquet(run_dir / "hop_stats.parquet")
    have = set(zip(hops["stack"], hops["workload"], strict=True))
    missing = {(s, w) for s, ws in RUNS.items() for w in ws} - have
    assert not missing, f"no per-hop statistics for {sorted(missing)}"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for s, ws in RUNS.items():
        assert set(manifest["expected_hops"][s]) >= set(ws)


def test_report_sections_have_data_for_each_stack(run_dir: Path) -> None:
    md = (run_dir / "report.md").read_text()
    for heading in ("## Headline", "## Run and phases", "## Fairness controls", "## Instrumentation overhead",
                    "## Independent cross-checks", "## Data quality", "### Hop closure"):  # fmt: skip
        assert heading in md, f"report.md has no {heading!r}"
    for w in WORKLOADS:
        assert f"## Workload: {w}" in md
    headline = md.split("## Headline", 1)[1].split("<a id=", 1)[0]
    table = [line for line in headline.splitlines() if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    for w in WORKLOADS:
        row = next(line for line in table if line.startswith(f"| {w} |"))
        cells = dict(zip(header, [c.strip() for c in row.strip("|").split("|")], strict=True))
        # per stack: the sample count and the p50 with its 95 % interval (the smoke profile is too
        # short for a p99 with 10 samples beyond it, so p99/p99.9 may read "–"), and a p50 verdict
        for s in (s for s, ws in RUNS.items() if w in ws):
            assert cells[f"{s} n"] not in ("–", ""), row
            assert re.fullmatch(r"[\d.,]+ \[[\d.,]+–[\d.,]+\]", cells[f"{s} p50 (ms)"]), row
        assert cells["verdict at p50"] != "–", row
    assert "### Latency vs offered rate (sweep)" in md
    assert "### Point reads of the aggregate" in md
    overhead = md.split("## Instrumentation overhead", 1)[1].split("<a id=", 1)[0]
    for w in WORKLOADS:
        for s in STACKS:
            assert f"| {w} | {s} |" in overhead, f"no overhead row for {s} × {w}"
    # tracing off must switch off the stacks' own spans too, not only the generator's
    assert "generator only" not in overhead, overhead
    html = (run_dir / "report.html").read_text()
    assert html.count('class="plot"') >= 4 * 4  # CDF, breakdown, growth, shares per workload at least


def test_crosschecks_ran_with_ratios(experiment: dict, run_dir: Path) -> None:
    checks = experiment["crosschecks"]
    for name in ("kafka_end_to_end", "pgbench"):
        assert checks[name]["status"] == "ok", checks[name]
        assert 0 < checks[name]["p50_ms"] <= checks[name]["p99_ms"]
    assert checks["kafka_end_to_end"]["topic"]["replication_factor"] == 3
    section = (
        (run_dir / "report.md").read_text().split("## Independent cross-checks", 1)[1].split("<a id=", 1)[0]
    )
    assert section.count("×") >= 4  # p50 and p99 ratio for both checks


def test_fairness_read_back_matches_config(experiment: dict, deployed: Context) -> None:
    from hopscope.analysis.report.context import ReportContext
    from hopscope.analysis.report.experiment_sections import apply_experiment, fairness_frame

    class _NoRun:
        def pairs(self) -> list:
            return []

    ctx = ReportContext(_NoRun(), *(pd.DataFrame(),) * 4, stacks=[], workloads=[])  # type: ignore[arg-type]
    apply_experiment(ctx, experiment)
    frame = fairness_frame(ctx).set_index("control")
    assert (frame["matches"] == "yes").all(), frame[frame["matches"] != "yes"].to_dict("index")
    cfg = deployed.config
    assert frame.loc["Harper write confirmation (replicas)", "harper"] == str(cfg.harper.confirm_replicas)
    assert frame.loc["Harper nodes", "harper"] == str(cfg.harper.nodes)
    kafka_driver = next(
        p["driver"] for p in experiment["phases"] if p["phase"]["stack"] == "kafka" and p["driver"]
    )
    assert (
        frame.loc["Postgres synchronous_commit", "kafka"]
        == kafka_driver["postgres"]["synchronous_commit"]
        == "on"
    )
