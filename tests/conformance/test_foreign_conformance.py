"""The external trace files of shared/conformance/traces, ingested and analysed as a new user
would (`hopscope ingest` + `hopscope analyze --label`): sensible hop and workload names, no
empty name in a table, a file name or the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from hopscope.analysis.report.analyze import analyze_run
from hopscope.collector.ingest import ingest

FOLDERS = ("jaeger-json", "zipkin-v2", "otlp-json", "jaeger-api-v3")


def _analysed(shared_dir: Path, folder: str, tmp_path: Path) -> Path:
    run_dir = tmp_path / folder
    quiet = Console(quiet=True)
    ingest([shared_dir / "conformance" / "traces" / folder], run_dir, console=quiet)
    analyze_run(run_dir, console=quiet, label=f"{folder} example")
    return run_dir


def _names_ok(values: pd.Series) -> None:
    for v in values:
        assert isinstance(v, str) and v.strip() and v != "nan", repr(v)


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_empty_names_anywhere(shared_dir: Path, folder: str, tmp_path: Path) -> None:
    run_dir = _analysed(shared_dir, folder, tmp_path)
    hops = pd.read_parquet(run_dir / "hop_stats.parquet")
    e2e = pd.read_parquet(run_dir / "e2e.parquet")
    for frame in (hops, e2e):
        for col in ("stack", "workload"):
            _names_ok(frame[col])
    _names_ok(hops["hop"])
    pairs = json.loads((run_dir / "quality.json").read_text())["pairs"]
    assert pairs, "no trace became a stack × workload"
    for entry in pairs.values():
        assert entry["stack"] == f"{folder} example"
        _names_ok(pd.Series([entry["workload"]]))
    for graph in run_dir.glob("graph-*.graphml"):
        assert "--" not in graph.name and "-~" not in graph.name, graph.name
    report = (run_dir / "report.md").read_text()
    assert report.startswith(f"# hopscope report — {folder} example: ")
    assert "## Method" in report
    assert not re.search(r"Workload: *$|Entry operation: *$", report, re.MULTILINE)
    for hidden in ("Fairness controls", "Instrumentation overhead", "cross-checks", "Hop closure", "ledger"):
        assert hidden not in report, hidden


def test_jaeger_ui_ride_sharing_example(shared_dir: Path, tmp_path: Path) -> None:
    run_dir = _analysed(shared_dir, "jaeger-json", tmp_path)
    hops = pd.read_parquet(run_dir / "hop_stats.parquet").set_index("hop")
    assert set(hops["workload"]) == {"load-generator OrderVehicle"}
    assert set(hops.index) == {
        "load-generator OrderVehicle",
        "load-generator HTTP GET",
        "ride-sharing-app BikeHandler",
        "ride-sharing-app FindNearestVehicle",
    }
    # the span that dominates the trace dominates its path
    assert hops["crit_share"].idxmax() == "ride-sharing-app FindNearestVehicle"
    assert list(run_dir.glob("graph-*.graphml"))


def test_zipkin_examples_name_entries_and_routes(shared_dir: Path, tmp_path: Path) -> None:
    run_dir = _analysed(shared_dir, "zipkin-v2", tmp_path)
    hops = pd.read_parquet(run_dir / "hop_stats.parquet")
    assert {"datamgmt get /oauth/authorize", "routing post /location/update/v4", "servicea get"} <= set(
        hops["workload"]
    )
    # ids inside names are normalised, so the per-request paths collapse into one hop
    assert not any(re.search(r"/\d+(/|$)", h) for h in hops["hop"])
