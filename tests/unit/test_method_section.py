"""The "Method and limits" section and the durability table (analysis/report/method_section.py),
and the durability each shipped stack declares (its stack.yaml)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from hopscope.analysis.report.context import ReportContext
from hopscope.analysis.report.method_section import (
    durability_frame,
    durability_line,
    method_section,
    reproduce_command,
    unmatched_workloads,
)
from hopscope.pipelines.stack import DurabilitySpec, load_stack


def _durable(stored: str, ack: int, notify: int) -> dict[str, Any]:
    return {"stored": stored, "copies_before_ack": ack, "copies_before_notify": notify, "by": "setting"}


def _ctx(manifest: dict[str, Any], experiment: dict[str, Any]) -> ReportContext:
    empty = pd.DataFrame()
    ctx = ReportContext(
        SimpleNamespace(manifest=manifest),  # type: ignore[arg-type]
        empty, empty, empty, empty, ["kafka", "harper"], ["write_notify", "ingest"],
    )  # fmt: skip
    ctx.experiment = experiment
    return ctx


EXPERIMENT = {
    "stack_info": {
        "kafka": {
            "durability": {"write_notify": _durable("row + record", 1, 2), "ingest": _durable("record", 2, 2)}
        },
        "harper": {
            "durability": {"write_notify": _durable("record", 2, 1), "ingest": _durable("record", 2, 2)}
        },
    },
    "services_fairness": {"harper": {"harper_version": "4.7.29"}, "kafka": {"kafka_version": "4.4.0"}},
    "phases": [{"resources": {"host_bound": True}}, {"resources": {"host_bound": False}}, {"status": "ok"}],
}
MANIFEST = {
    "command": "run",
    "profile": {"name": "quick"},
    "stacks": ["kafka", "harper"],
    "workloads": {"write_notify": {"rate": 40.0, "duration_s": 10, "warmup_s": 3, "subscribers": [{}, {}]}},
    "repeat": 3,
    "git": {"commit": "abc123", "dirty": True},
    "host": {"cpu_model": "Test CPU", "cpu_count": 2, "memory_bytes": 2**33, "platform": "Linux"},
    "versions": {"pandas": "3.1.1"},
}


def test_unequal_copies_before_the_notification_are_not_matched_and_the_headline_says_so() -> None:
    ctx = _ctx(MANIFEST, EXPERIMENT)
    frame = durability_frame(ctx).set_index(["workload", "stack"])
    assert not frame.loc[("write_notify", "kafka"), "matched"]
    assert frame.loc[("ingest", "harper"), "matched"]
    assert unmatched_workloads(ctx) == ["write_notify"]
    line = durability_line(ctx)
    assert line is not None and "write_notify (kafka 2, harper 1)" in line and "ingest" not in line


def test_matched_durability_adds_no_headline_line() -> None:
    experiment = {**EXPERIMENT, "stack_info": {s: {"durability": {"ingest": _durable("r", 2, 2)}} for s in ("kafka", "harper")}}  # fmt: skip
    assert durability_line(_ctx(MANIFEST, experiment)) is None
    assert durability_line(_ctx(MANIFEST, {})) is None  # nothing declared: nothing claimed


def test_the_method_section_has_the_command_host_versions_durability_and_limits() -> None:
    (section,) = method_section(_ctx(MANIFEST, EXPERIMENT))
    md = section.markdown
    cmd = "hopscope run --profile quick --stacks kafka,harper --workloads write_notify --repeat 3"
    assert cmd in md
    assert "commit abc123 with uncommitted changes" in md
    assert "Test CPU; 2 cores; 8.0 GiB memory" in md
    assert "| harper: harper | 4.7.29 | service |" in md and "| pandas | 3.1.1 | library |" in md
    assert "NOT MATCHED" in md and "| write_notify | 40.0 | 10 | 3 |" in md
    assert "In this run 1 of 2 phase(s) were host-bound." in md


def test_a_bench_run_is_not_given_a_run_command_to_reproduce() -> None:
    assert reproduce_command({"command": "bench"}) is None
    (section,) = method_section(_ctx({"command": "bench"}, {}))
    assert "made by `hopscope bench`" in section.markdown


def test_the_shipped_stacks_declare_matched_durability_for_every_workload() -> None:
    """Each stack says what is durable before it notifies, and the shipped stacks match on every
    workload (D21: Harper's fan-out is a confirmed write, its subscribers sit on the replicas) —
    so the default run's headline carries no "durability not matched" warning."""
    declared = {name: load_stack(name).report_info()["durability"] for name in ("kafka", "harper")}
    for name, by_workload in declared.items():
        assert set(by_workload) == {"write_notify", "fanout", "aggregate", "ingest"}, name
    for workload in ("write_notify", "fanout", "aggregate", "ingest"):
        copies = {name: declared[name][workload]["copies_before_notify"] for name in declared}
        assert copies == {"kafka": 2, "harper": 2}, (workload, copies)


def test_a_durability_declaration_cannot_claim_negative_copies() -> None:
    with pytest.raises(ValidationError):
        DurabilitySpec(stored="x", copies_before_ack=-1, copies_before_notify=0, by="y")
