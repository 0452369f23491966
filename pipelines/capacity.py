"""The last measured capacity of each stack × workload on this host, kept in the state directory.

A rate sweep (`hopscope bench --sweep`, `hopscope run --profile capacity`) records, per stack
and workload, the highest offered rate sustained below the knee (`analysis/sweep.py`) with its
latency. `bench` and `run` read it back before a run and warn when the requested rate is
above it: such a run measures a queue, not the pipeline. The file is per host (the state
directory's), so a figure from another machine never applies here.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from hopscope.deploy.config import load_config

#: the file in the state directory
CAPACITY_FILE = "capacity.json"
#: the components' standalone figures (benchmarks/component_capacity.py) in the state directory
COMPONENTS_FILE = "capacity/components.json"


@dataclass(frozen=True)
class Capacity:
    """One stack × workload's measured capacity: `sustained_rate` is None when even the lowest
    offered rate was past the knee; `knee_rate` is None when no offered rate reached it (the
    capacity is then at least `sustained_rate`)."""

    stack: str
    workload: str
    sustained_rate: float | None
    knee_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    offered: tuple[float, ...]
    tracing: bool
    measured_at: str
    run_dir: str

    @property
    def bounded(self) -> bool:
        return self.knee_rate is not None


def state_path(state_dir: Path | None = None) -> Path:
    return (state_dir or load_config().state_dir) / CAPACITY_FILE


def load_capacities(path: Path | None = None) -> dict[tuple[str, str], Capacity]:
    """Every recorded capacity (an absent or unreadable file: none — it is advice, not input)."""
    path = path or state_path()
    try:
        doc = orjson.loads(path.read_bytes())
        return {(r["stack"], r["workload"]): Capacity(**{**r, "offered": tuple(r["offered"])}) for r in doc}
    except (OSError, orjson.JSONDecodeError, TypeError, KeyError):
        return {}


def record_capacities(found: list[Capacity], path: Path | None = None) -> Path:
    """Replace the recorded figures of the stack × workloads in `found` (the others stay)."""
    path = path or state_path()
    known = load_capacities(path)
    known.update({(c.stack, c.workload): c for c in found})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(orjson.dumps([asdict(c) for c in known.values()], option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    return path


def capacity_from_steps(
    stack: str, workload: str, steps: list[dict[str, Any]], *, tracing: bool, run_dir: Path
) -> Capacity:
    """A Capacity from one stack × workload's sweep steps (rising rate; each with target_rate,
    p50_ms, p99_ms, knee, sustained — the analysis' `sweep_steps` rows)."""
    top = next((s for s in steps if s.get("sustained")), None)
    knee = next((s for s in steps if s.get("knee")), None)
    return Capacity(
        stack=stack,
        workload=workload,
        sustained_rate=float(top["target_rate"]) if top else None,
        knee_rate=float(knee["target_rate"]) if knee else None,
        p50_ms=_num(top.get("p50_ms")) if top else None,
        p99_ms=_num(top.get("p99_ms")) if top else None,
        offered=tuple(float(s["target_rate"]) for s in steps),
        tracing=tracing,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_dir=str(run_dir),
    )


def rate_warning(stack: str, workload: str, rate: float, path: Path | None = None) -> str | None:
    """A warning when `rate` is above the stack's last measured capacity for the workload."""
    cap = load_capacities(path).get((stack, workload))
    if cap is None or not cap.bounded:
        return None
    limit = cap.sustained_rate or 0.0
    if rate <= limit:
        return None
    return (
        f"{rate:g} events/s is above the {stack} stack's measured capacity for {workload} on this "
        f"host ({limit:g} ev/s sustained, knee at {cap.knee_rate:g} ev/s; {cap.measured_at}): the run "
        "will measure a growing queue, not the pipeline"
    )


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None
