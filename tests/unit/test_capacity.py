"""Capacity: a sweep's steps become a recorded capacity, a later rate above it is warned about,
and the report's capacity section compares each pipeline with its slowest part."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hopscope.analysis.ledger import SWEEP_COLUMNS
from hopscope.analysis.report.capacity_section import capacity_frame, capacity_section
from hopscope.analysis.report.context import ReportContext
from hopscope.analysis.sweep import knee_index, sustained_rate
from hopscope.pipelines.capacity import capacity_from_steps, load_capacities, rate_warning, record_capacities


def _steps(stack: str, workload: str, p99s: list[float], rates: list[float]) -> list[dict]:
    rows = [
        {"workload": workload, "stack": stack, "target_rate": r, "repeats": 1, "events": int(r * 10),
         "delivered": int(r * 10), "achieved_rate": r, "p50_ms": p / 4, "p99_ms": p, "p999_ms": p}
        for r, p in zip(rates, p99s, strict=True)
    ]  # fmt: skip
    k, top = knee_index(rows), sustained_rate(rows)
    for i, row in enumerate(rows):
        row["knee"], row["sustained"] = i == k, row["target_rate"] == top
    return rows


def test_a_sweep_records_its_capacity_and_warns_above_it(tmp_path: Path) -> None:
    path = tmp_path / "capacity.json"
    steps = _steps("kafka", "fanout", [10, 12, 15, 80], [25, 50, 100, 200])
    cap = capacity_from_steps("kafka", "fanout", steps, tracing=True, run_dir=tmp_path)
    assert (cap.sustained_rate, cap.knee_rate, cap.p99_ms) == (100.0, 200.0, 15.0)
    record_capacities([cap], path)
    # a second stack recorded later keeps the first
    other = capacity_from_steps("harper", "fanout", _steps("harper", "fanout", [5, 6], [25, 50]), tracing=True, run_dir=tmp_path)  # fmt: skip
    record_capacities([other], path)
    assert set(load_capacities(path)) == {("kafka", "fanout"), ("harper", "fanout")}
    assert rate_warning("kafka", "fanout", 100.0, path) is None
    warning = rate_warning("kafka", "fanout", 150.0, path)
    assert warning is not None and "100 ev/s sustained" in warning and "knee at 200" in warning
    # no knee reached: the capacity is a lower bound, nothing to warn about
    assert rate_warning("harper", "fanout", 1000.0, path) is None
    assert rate_warning("kafka", "aggregate", 1000.0, path) is None


def test_an_unreadable_capacity_file_is_no_advice(tmp_path: Path) -> None:
    path = tmp_path / "capacity.json"
    path.write_text("{not json")
    assert load_capacities(path) == {} and rate_warning("kafka", "fanout", 1e6, path) is None


class _SweptRun:
    def __init__(self, steps: list[dict]) -> None:
        self._steps = pd.DataFrame(steps, columns=SWEEP_COLUMNS)

    def sweeps(self) -> pd.DataFrame:
        return self._steps.copy()


def test_the_capacity_section_flags_a_pipeline_below_half_its_slowest_part() -> None:
    steps = _steps("kafka", "aggregate", [10, 11, 50], [25, 50, 100]) + _steps(
        "harper", "aggregate", [8, 9, 10], [25, 50, 100]
    )
    ctx = ReportContext(_SweptRun(steps), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), [], [])  # type: ignore[arg-type]  # fmt: skip
    ctx.experiment = {
        "capacity_parts": {
            "kafka": {"aggregate": ["kafka-producer", "kafka-streams"]},
            "harper": {"aggregate": ["harper-confirmed-write"]},
        },
        "components_capacity": {
            "components": [
                {"component": "kafka-producer", "rate_per_s": 20000.0},
                {"component": "kafka-streams", "rate_per_s": 400.0},
                {"component": "harper-confirmed-write", "rate_per_s": 150.0},
            ]
        },
    }
    frame = capacity_frame(ctx).set_index("stack")
    assert frame.loc["kafka", "sustained_rate"] == 50.0 and frame.loc["kafka", "knee_rate"] == 100.0
    assert frame.loc["kafka", "slowest_part"] == "kafka-streams (400/s)"
    assert frame.loc["kafka", "share_of_part"] == 50.0 / 400.0
    assert frame.loc["kafka", "flag"] == "below half its slowest part"
    # no knee within the offered rates: a lower bound, 100 of the part's 150 is not flagged
    assert pd.isna(frame.loc["harper", "knee_rate"])
    assert frame.loc["harper", "bound"].startswith("≥") and frame.loc["harper", "flag"] == ""
    # below half its part but no knee reached: a lower bound, not a finding
    ctx.experiment["components_capacity"]["components"][2]["rate_per_s"] = 1000.0
    assert capacity_frame(ctx).set_index("stack").loc["harper", "flag"] == ""
    (section,) = capacity_section(ctx)
    assert "kafka/aggregate sustains 50 ev/s, 12% of kafka-streams (400/s)" in section.markdown
    assert "no resource record to say why" in section.markdown


def _phase(stack: str, workload: str, cpu_s: dict[str, float], events: int) -> dict:
    services = {name: {"role": "stack", "state": "running", "cpu_s": v} for name, v in cpu_s.items()}
    return {
        "phase": {
            "workload": workload,
            "stack": stack,
            "repeat": 0,
            "tracing": True,
            "label": f"{stack}-{workload}",
        },
        "status": "ok",
        "resources": {"services": services, "events": events, "cores": 2, "host_cpu": {}},
    }


@pytest.mark.parametrize(
    ("cpu_s", "ceiling", "why"),
    [
        # 0.5 ms of CPU per event: 2 cores last to 4,000 ev/s, the knee at 100 is not the host's
        ({"kafka": 1.0, "glue": 1.5}, 4000.0, "not for lack of CPU"),
        # 15 ms per event: the 2 cores run out near 133 ev/s, the knee at 100 is the host's
        ({"kafka": 30.0, "glue": 45.0}, 2000 / 15, "the host's limit, not a part's"),
    ],
)
def test_the_capacity_section_says_why_a_pipeline_is_below_its_parts(
    cpu_s: dict, ceiling: float, why: str
) -> None:
    steps = _steps("kafka", "aggregate", [10, 11, 50], [25, 50, 100])
    ctx = ReportContext(_SweptRun(steps), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), [], [])  # type: ignore[arg-type]  # fmt: skip
    ctx.experiment = {
        "capacity_parts": {"kafka": {"aggregate": ["kafka-streams"]}},
        "components_capacity": {"components": [{"component": "kafka-streams", "rate_per_s": 400.0}]},
        "phases": [_phase("kafka", "aggregate", cpu_s, 5000)],
    }
    row = capacity_frame(ctx).iloc[0]
    assert row["cpu_ms_per_event"] == pytest.approx(1e3 * sum(cpu_s.values()) / 5000)
    assert row["host_ceiling"] == pytest.approx(ceiling)
    (section,) = capacity_section(ctx)
    assert why in section.markdown


def test_no_sweep_no_capacity_section() -> None:
    ctx = ReportContext(_SweptRun([]), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), [], [])  # type: ignore[arg-type]  # fmt: skip
    assert list(capacity_section(ctx)) == []


def test_an_invalid_component_measurement_is_shown_but_never_a_pipelines_slowest_part() -> None:
    """Harper's confirmed-write benchmark with 8 clients stalls (D14) and records 15/s with an
    error: the table shows it flagged, the pipeline is measured against the valid parts only."""
    steps = _steps("harper", "ingest", [8, 9, 50], [25, 50, 100])
    ctx = ReportContext(_SweptRun(steps), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), [], [])  # type: ignore[arg-type]  # fmt: skip
    stalled = "confirmations stalled: 16 write(s) got no answer within 10 s"
    ctx.experiment = {
        "capacity_parts": {"harper": {"ingest": ["harper-confirmed-write", "postgres-insert"]}},
        "components_capacity": {
            "components": [
                {"component": "harper-confirmed-write", "rate_per_s": 15.0, "error": stalled},
                {"component": "postgres-insert", "rate_per_s": 5000.0},
            ]
        },
    }
    row = capacity_frame(ctx).set_index("stack").loc["harper"]
    assert row["slowest_part"] == "postgres-insert (5,000/s)"
    (section,) = capacity_section(ctx)
    assert f"not a capacity: {stalled}" in section.markdown
    # with only the invalid measurement there is no slowest part at all, and no flag
    ctx.experiment["components_capacity"]["components"].pop()
    row = capacity_frame(ctx).set_index("stack").loc["harper"]
    assert row["slowest_part"] == "–" and row["flag"] == ""
