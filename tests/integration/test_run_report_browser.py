"""The report opens in a real browser: headless Chromium loads report.html, runs its scripts
without a JavaScript error, and plotly draws every plot — the single deliveries' waterfalls with
their bars among them, and their trace links name the configured Jaeger UI and trace ids the run
has.

Which report: the `hopscope run` integration run (`runs/artifacts/integration-run/`, from
test_run.py, which pytest runs first: this file's name sorts after it) when it is there, else
a synthetic run built here (`hopscope synth` + `hopscope analyze`). The screenshot is kept at `runs/artifacts/report-browser/report.png`
(with the DOM dump and Chromium's console log beside it).

Chromium is a Debian package (`chromium`); on a fresh machine the fixture installs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from hopscope.core.rundir import SPANS_PARQUET
from hopscope.deploy import apt
from hopscope.deploy.config import load_config

REPO = Path(__file__).resolve().parents[2]
RUN_REPORT = REPO / "runs" / "artifacts" / "integration-run" / "report.html"
ARTIFACTS = REPO / "runs" / "artifacts" / "report-browser"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",  # let plotly finish drawing before the dump / screenshot
]
#: Chromium logs every console message of the page as `...:CONSOLE:<line>] "<text>"` (an
#: uncaught exception as "Uncaught ..."); the report itself logs nothing, so any is an error.
JS_ERROR = re.compile(r"CONSOLE[:(]\d+|Uncaught")


@pytest.fixture(scope="module")
def chromium() -> str:
    apt.ensure("report-browser", ["chromium"])
    path = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(path).exists(), "chromium is not installed"
    return path


@pytest.fixture(scope="module")
def report_html() -> Path:
    if RUN_REPORT.exists():
        return RUN_REPORT
    out = ARTIFACTS / "synth-run"
    if out.exists():
        shutil.rmtree(out)
    hopscope = [sys.executable, "-m", "hopscope.cli"]
    for args in (["synth", "--out", str(out), "--events", "400"], ["analyze", str(out)]):
        done = subprocess.run(
            [*hopscope, *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]
    return out / "report.html"


def _chromium(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="hopscope-chromium-") as profile:
        return subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def test_report_renders_every_plot_without_js_errors(chromium: str, report_html: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = report_html.resolve().as_uri()
    dom = _chromium(chromium, "--dump-dom", url)
    (ARTIFACTS / "dom.html").write_text(dom.stdout)
    (ARTIFACTS / "console.log").write_text(dom.stderr)
    assert dom.returncode == 0, dom.stderr[-2000:]
    errors = [line for line in dom.stderr.splitlines() if JS_ERROR.search(line)]
    assert not errors, "JavaScript errors:\n" + "\n".join(errors[:20])

    source = report_html.read_text()
    plots = source.count('<div class="plot">')
    assert plots > 0, "the report has no plot to render"
    # plotly replaces each plot div's content with an SVG drawing: one `main-svg` layer (or more) per plot
    drawn = len(re.findall(r'class="plot-container plotly"', dom.stdout))
    assert drawn == plots, f"{drawn} of {plots} plots drawn"
    assert dom.stdout.count('class="main-svg"') >= plots
    for anchor in re.findall(r'<section[^>]* id="([^"]+)"', source)[:50]:
        assert f'id="{anchor}"' in dom.stdout


@pytest.fixture(scope="module")
def dom(chromium: str, report_html: Path) -> str:
    done = _chromium(chromium, "--dump-dom", report_html.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _plot_divs(dom: str) -> dict[str, str]:
    """Each plot's div id → its drawn DOM (up to the next plot)."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div id="([^"]+)" class="plotly-graph-div', dom)]
    ends = [s for s, _ in starts[1:]] + [len(dom)]
    return {div: dom[a:b] for (a, div), b in zip(starts, ends, strict=True)}


def test_waterfalls_are_drawn_with_their_bars(report_html: Path, dom: str) -> None:
    source = report_html.read_text()
    waterfalls = re.findall(
        r'<div id="([a-z0-9-]+-deliveries-[a-z0-9-]+-\d+)" class="plotly-graph-div', source
    )
    assert waterfalls, "the report has no waterfall"
    # each workload × stack with deliveries shows its p50, p99 and slowest (fewer when they coincide)
    heads = source.count('<p class="waterfall-head">')
    assert heads == len(waterfalls)
    drawn = _plot_divs(dom)
    for div in waterfalls:
        assert div in drawn, f"waterfall {div} not in the page"
        body = drawn[div]
        assert 'class="plot-container plotly"' in body, f"waterfall {div} not drawn"
        # plotly draws a bar trace as `trace bars` with one path per bar: spans and the critical path
        assert body.count('class="trace bars"') >= 2, f"waterfall {div}: no span or critical-path bars"
        assert body.count('class="point"') >= 2, f"waterfall {div}: no bar drawn"


def test_jaeger_links_carry_trace_ids_of_the_run(report_html: Path, dom: str) -> None:
    links = re.findall(r'<a class="trace-link" data-ui="Jaeger" data-trace-id="([^"]+)" href="([^"]+)"', dom)
    assert links, "no Jaeger link in the rendered page"
    assert len(links) == dom.count('<p class="waterfall-head">')  # one per waterfall
    jaeger = load_config().jaeger.query_url.rstrip("/")
    for trace_id, href in links:
        assert href == f"{jaeger}/trace/{trace_id}"
    ids = sorted({t for t, _ in links})
    spans = pq.read_table(report_html.parent / SPANS_PARQUET, columns=["trace_id"])
    present = pc.unique(spans.column("trace_id").cast("string")).to_pylist()
    missing = sorted(set(ids) - set(present))
    assert not missing, f"links to trace ids the run does not have: {missing[:5]}"


def test_screenshot_is_kept(chromium: str, report_html: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = _chromium(
        chromium, f"--screenshot={shot}", "--window-size=1400,5000", report_html.resolve().as_uri()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000, f"screenshot is only {len(data)} bytes: the page looks blank"
