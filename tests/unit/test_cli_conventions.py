"""The command line's conventions: `--version`, `-h` as `--help` on every command, `--json`."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hopscope.analysis import load
from hopscope.cli import app
from hopscope.core.rundir import LEDGER, SPANS_DIR, SPANS_PARQUET

runner = CliRunner()


def test_version_prints_the_installed_packages_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"hopscope {metadata.version('hopscope')}"


@pytest.mark.parametrize("command", [[], ["analyze"], ["ingest"], ["bench"], ["run"], ["up"]])
def test_dash_h_is_help_everywhere(command: list[str]) -> None:
    short, long = runner.invoke(app, [*command, "-h"]), runner.invoke(app, [*command, "--help"])
    assert short.exit_code == long.exit_code == 0, short.output
    assert "Usage: hopscope" in short.output and short.output == long.output


@pytest.mark.parametrize("value", [-1e-9, -0.00049, 0.0, -0.0])
def test_a_share_that_rounds_to_zero_is_never_printed_negative(value: float) -> None:
    from hopscope.analysis.report.tables import fmt_share

    assert fmt_share(value) == "0.0 %"


def test_json_summaries_are_one_document_on_stdout(tmp_path: Path) -> None:
    """`--json` on synth's run: analyze's verdicts are the run's, ingest's span count is the
    Parquet's, bench's outcome counts are the ledger's; stdout holds nothing but the document."""
    run = tmp_path / "run"
    assert runner.invoke(app, ["synth", "--out", str(run), "--events", "20", "--seed", "4"]).exit_code == 0
    res = runner.invoke(app, ["ingest", str(run / SPANS_DIR), "--out", str(tmp_path / "again"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["spans"] == pq.read_metadata(tmp_path / "again" / SPANS_PARQUET).num_rows > 0
    res = runner.invoke(app, ["analyze", str(run), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert Path(doc["report"]["html"]).is_file()
    verdicts = load(run).verdicts()
    assert len(doc["verdicts"]) == len(verdicts) > 0
    assert {v["workload"] for v in doc["verdicts"]} == set(verdicts["workload"])
    out = tmp_path / "bench"
    args = [
        "bench",
        "--stack",
        "loopback",
        "--workload",
        "write_notify",
        "--rate",
        "40",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]
    res = runner.invoke(app, [*args, "--no-tracing", "--no-progress", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    ledger = pq.read_table(out / LEDGER).column("outcome").to_pylist()
    assert {k: n for k, n in doc["outcomes"].items() if n} == {k: ledger.count(k) for k in set(ledger)}
