"""End to end on a synthetic run with known ground truth: `hopscope synth` → `hopscope ingest`
→ `hopscope analyze`; the report's headline is checked against truth.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopscope.cli import app

# Broken traces that synth plants on purpose leave a delivery or two out of the analysis,
# which moves a quantile a little; the verdicts must not move.
REL = 0.03


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, object, object]:
    run_dir = tmp_path_factory.mktemp("synth")
    runner = CliRunner()
    synth = runner.invoke(
        app, ["synth", "--out", str(run_dir), "--events", "300", "--seed", "5", "--no-parquet"]
    )
    assert synth.exit_code == 0, synth.output
    ingest = runner.invoke(app, ["ingest", str(run_dir / "spans"), "--out", str(run_dir)])
    assert ingest.exit_code == 0, ingest.output
    lenient = runner.invoke(app, ["analyze", str(run_dir)])
    strict = runner.invoke(app, ["analyze", str(run_dir), "--strict"])
    truth = json.loads((run_dir / "truth.json").read_text())
    return run_dir, truth, lenient, strict


def _headline_rows(md: str) -> dict[str, dict[str, str]]:
    section = md.split("## Headline", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {
        cells[0]: dict(zip(header, cells, strict=True))
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])
    }


def test_analyze_succeeds_and_strict_fails_on_the_planted_breakage(run) -> None:
    run_dir, _truth, lenient, strict = run
    assert lenient.exit_code == 0, lenient.output
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()
    # synth plants orphans, duplicates and bad lines: --strict must refuse the run.
    assert strict.exit_code == 1
    assert "data-quality problem" in strict.output


def test_headline_verdicts_match_the_ground_truth(run) -> None:
    run_dir, truth, _, _ = run
    rows = _headline_rows((run_dir / "report.md").read_text())
    workloads = {key.split("/")[1] for key in truth["pairs"]}
    assert set(rows) == workloads
    for workload in workloads:
        e2e = {s: truth["pairs"][f"{s}/{workload}"]["e2e_ms"] for s in ("kafka", "harper")}
        row = rows[workload]
        for q, column in (("p50_ms", "verdict at p50"), ("p99_ms", "verdict at p99")):
            lower, higher = sorted(e2e, key=lambda s: e2e[s][q])
            true_ratio = e2e[higher][q] / e2e[lower][q]
            n = min(int(row[f"{s} n"].replace(",", "")) for s in e2e)
            if n * (1 - {"p50_ms": 0.5, "p99_ms": 0.99}[q]) < 10:  # too few samples beyond it
                assert row[column] == "not shown (< 10 samples beyond)"
                continue
            m = re.fullmatch(
                r"(?:(\w+) lower, |no clear difference \()×([\d.]+) \[([\d.]+)–([\d.]+)\]\)?", row[column]
            )
            assert m, row[column]
            assert float(m.group(2)) == pytest.approx(true_ratio, rel=REL)
            # "lower" only where the interval excludes 1, and then the right stack
            lo, hi = float(m.group(3)), float(m.group(4))
            assert (m.group(1) is not None) == (lo > 1 or hi < 1)
            if m.group(1) is not None:
                assert m.group(1) == lower
        for stack in e2e:
            value = row[f"{stack} p50 (ms)"].split(" [")[0]
            assert float(value.replace(",", "")) == pytest.approx(e2e[stack]["p50_ms"], rel=REL)
        losing = max(e2e, key=lambda s: e2e[s]["p99_ms"])
        assert row["where the losing stack's tail opens"].startswith(
            f"{losing}: {truth['pairs'][f'{losing}/{workload}']['top_tail_hop_p99']} ("
        )


def test_report_counts_what_ingest_skipped(run) -> None:
    run_dir, truth, _, _ = run
    md = (run_dir / "report.md").read_text()
    m = re.search(r"Ingest read (\d+) file\(s\), ([\d,]+) span\(s\); skipped: bad_json (\d+)\.", md)
    assert m, md.split("## Data quality", 1)[1][:2000]
    assert int(m.group(3)) == truth["malformed_lines"]
    # every file is accounted to the reader that read it; the ones with broken lines were
    # declined by the fast reader and read whole by the tolerant one
    read_by = re.search(r"Read by: (.*?)\.(?:\s|$)", md)  # "pyarrow.json" has a dot of its own
    assert read_by, md
    readers = dict(re.findall(r"(native|pyarrow\.json|python) (\d+)", read_by.group(1)))
    assert sum(int(v) for v in readers.values()) == int(m.group(1))
    assert int(readers.get("python", 0)) >= 1 and "declined" in md


def test_report_html_has_a_section_with_plots_per_workload(run) -> None:
    run_dir, truth, _, _ = run
    page = (run_dir / "report.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", page, re.I)
    for workload in {key.split("/")[1] for key in truth["pairs"]}:
        start = page.index(f'<section class="top" id="workload-{workload.replace("_", "-")}"')
        body = page[start : page.find('<section class="top"', start + 10)]
        # CDF, latency over time, breakdown, growth, shares, 2 hop graphs, and per stack the
        # waterfalls of its p50, p99 and slowest delivery (hundreds of deliveries: three different)
        assert body.count('<p class="waterfall-head">') == 2 * 3, workload
        assert body.count("Plotly.newPlot(") == 7 + 2 * 3, workload
        assert "No data for stack" not in body
