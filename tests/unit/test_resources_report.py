"""The report's resource table on an experiment document with known figures: two stacks (of
this test's own names), two repeats each, one phase host-bound — the per-event CPU of the
stack's services and in total, the host-bound mark, and the notebook frame."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from hopscope.analysis import load
from hopscope.analysis.report.analyze import analyze_run
from hopscope.core.rundir import EXPERIMENT
from hopscope.synth import SynthConfig, generate, write_run

BENCH = "hopscope (load generator + glue)"


def _svc(
    role: str, cpu_s: float | None, events: int, rss: float | None = 100.0, state: str = "running"
) -> dict:
    return {"role": role, "state": state, "cpu_s": cpu_s, "peak_rss_mb": rss if cpu_s is not None else None,
            "cpu_ms_per_event": None if cpu_s is None else round(1e3 * cpu_s / events, 4),
            "processes": 1 if cpu_s is not None else 0}  # fmt: skip


def _phase(
    stack: str, repeat: int, events: int, stack_cpu: dict[str, float], host_bound: bool = False
) -> dict:
    services = {name: _svc("stack", cpu, events) for name, cpu in stack_cpu.items()}
    services["collector"] = _svc("telemetry", 0.5, events, rss=50.0)
    services["tracestore"] = _svc("telemetry", None, events, state="not running")
    services[BENCH] = _svc("load generator + glue", 0.5, events, rss=150.0)
    lag = 2.5 if host_bound else 0.2
    return {
        "phase": {"stack": stack, "workload": "write_notify", "repeat": repeat, "tracing": True,
                  "label": f"{stack}-write_notify-r{repeat}"},
        "status": "ok", "seconds": 20.0, "error": None, "span_files": 1, "driver": {},
        "figures": {"events": events, "outcomes": {"delivered": events}, "e2e_ms": {"p50": 5.0, "p99": 9.0, "p999": 10.0},
                    "schedule_lag_ms": {"p99": lag}},
        "resources": {
            "seconds": 20.0, "cores": 2, "events": events, "services": services,
            "host_cpu": {"interval_s": 0.5, "samples": [[0.5, 40.0], [1.0, 95.0 if host_bound else 60.0], [1.5, 50.0]],
                         "mean_percent": 61.7 if host_bound else 50.0, "share_above": 0.333 if host_bound else 0.0,
                         "threshold_percent": 85.0},
            "schedule_lag_p99_ms": lag,
            "host_bound": host_bound,
            "host_bound_reasons": ["host CPU above 85 % for 33 % of the phase", "load generator p99 lag 2.50 ms > 1 ms"]
            if host_bound else [],
            "host_bound_rule": {"cpu_percent": 85.0, "share": 0.1, "schedule_lag_p99_ms": 1.0},
        },
    }  # fmt: skip


def _run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    const = {"kind": "constant", "value_ms": 2}
    steps = [{"type": "span", "hop": "client.write", "service": "c", "kind": "PRODUCER", "dist": const},
             {"type": "wait", "dist": const},
             {"type": "span", "hop": "sub.receive", "service": "s", "kind": "CONSUMER", "dist": const}]  # fmt: skip
    cfg = SynthConfig.from_dict({
        "events": 100, "seed": 5,
        "breakage": {"orphan_rate": 0, "missing_hop_rate": 0, "duplicate_rate": 0, "skew_rate": 0, "malformed_lines": 0},
        "pairs": [{"stack": s, "workload": "write_notify", "steps": steps} for s in ("blue", "green")],
    })  # fmt: skip
    write_run(generate(cfg), run_dir, cfg)
    phases = [
        _phase("blue", 0, 1000, {"db": 1.0, "broker": 2.0}),
        _phase("green", 0, 500, {"node": 5.0}),
        _phase("green", 1, 500, {"node": 6.0}, host_bound=True),
        _phase("blue", 1, 1000, {"db": 1.2, "broker": 2.2}),
    ]
    experiment = {"stacks": ["blue", "green"], "workloads": ["write_notify"], "profile": "quick", "repeat": 2,
                  "phases": phases}  # fmt: skip
    (run_dir / EXPERIMENT).write_text(json.dumps(experiment))
    return run_dir


def _rows(table: str) -> dict[tuple[str, str], list[str]]:
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) > 3 and cells[0] not in ("workload", "---"):
            out[(cells[1], cells[2])] = cells
    return out


def test_resource_table_per_event_cpu_and_host_bound_mark(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    analyze_run(run_dir, console=Console(quiet=True))
    md = (run_dir / "report.md").read_text()
    section = md.split("## Resources and host load", 1)[1].split("\n## ", 1)[0]
    assert "A phase is host-bound when the host's CPU was above 85 % for more than 10 % of it" in section
    assert (
        "HOST-BOUND green-write_notify-r1: host CPU above 85 % for 33 % of the phase; load generator"
        in section
    )
    summary, per_service = section.split("*Per service", 1)
    rows = _rows(summary)
    header = next(line for line in summary.splitlines() if line.startswith("| workload"))
    cols = [c.strip() for c in header.strip().strip("|").split(" | ")]
    blue = dict(zip(cols, rows[("blue", "on")], strict=True))
    green = dict(zip(cols, rows[("green", "on")], strict=True))
    # blue: stack (1.0 + 2.0) s / 1000 events = 3.0 ms, then 3.4 ms; + collector 0.5 s + bench 0.5 s in total
    assert blue["stack's services CPU ms/event"] == "3.20 (3.00–3.40)"
    assert blue["total CPU ms/event"] == "4.20 (4.00–4.40)"
    assert blue["host-bound"] == "no"
    assert (
        blue["services involved"]
        == "db, broker, collector, hopscope (load generator + glue) (not measured: tracestore: not running)"
    )
    # green: 5.0 s / 500 = 10 ms, then 12 ms; total + 2 ms
    assert green["stack's services CPU ms/event"] == "11.0 (10.0–12.0)"
    assert green["total CPU ms/event"] == "13.0 (12.0–14.0)"
    assert green["host-bound"] == "**HOST-BOUND 1/2: r1** ⚠"
    assert green["schedule lag p99 (ms)"] == "1.35 (0.200–2.50)"
    assert green["peak memory (MB, Σ services)"] == "300"
    assert _rows(per_service)[("green", "node")][5] == "11.0 (10.0–12.0)"  # CPU ms/event traced
    # the headline's verdict for that workload says a phase behind it was host-bound
    headline = md.split("## Headline", 1)[1].split("\n## ", 1)[0]
    wn = next(line for line in headline.splitlines() if line.startswith("| write_notify"))
    assert "HOST-BOUND green: green-write_notify-r1" in wn and "blue: blue-" not in wn
    html = (run_dir / "report.html").read_text()
    assert "Resources and host load" in html and "resources-host-cpu-plot" in html

    frame = load(run_dir).resources()
    assert len(frame) == 2 * 5 + 2 * 4  # per phase: blue 2 stack services + 3 others, green 1 + 3
    node = frame[(frame["service"] == "node")].set_index("repeat")
    assert node.loc[0, "cpu_ms_per_event"] == pytest.approx(10.0)
    assert bool(node.loc[1, "host_bound"]) and not bool(node.loc[0, "host_bound"])
    assert frame[frame["service"] == "tracestore"]["cpu_s"].isna().all()


def test_a_run_without_resource_records_says_so(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    exp = json.loads((run_dir / EXPERIMENT).read_text())
    for p in exp["phases"]:
        del p["resources"]
    (run_dir / EXPERIMENT).write_text(json.dumps(exp))
    analyze_run(run_dir, console=Console(quiet=True))
    md = (run_dir / "report.md").read_text()
    assert "No phase of this run recorded its resources" in md
    assert load(run_dir).resources().empty
