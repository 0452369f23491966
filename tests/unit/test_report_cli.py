"""`hopscope analyze` end to end on the real analysis core: collector-style OTLP JSON files
written here with known hop latencies → ingest → analyse → report."""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hopscope.cli import app

HOPS = {
    "kafka": ["pg.commit", "cdc.poll", "kafka.broker", "notifier.receive"],
    "harper": ["rest.put", "replicate", "ws.receive"],
}
WORKLOAD = "write_notify"
N_EVENTS = 150


def _attrs(d: dict[str, str]) -> list[dict]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in d.items()]


def _event_spans(stack: str, i: int, t0: int, durations_ns: list[int]) -> list[dict]:
    """A root (the load generator's span) and one child per hop, each the child of the one
    before, back to back, the last a subscriber's receive span."""
    trace_id = f"{(1 if stack == 'kafka' else 2):02x}{i:030x}"
    spans = []
    parent, t = None, t0
    names = ["loadgen.send", *HOPS[stack]]
    durs = [200_000, *durations_ns]  # the root: 0.2 ms of client work
    for k, (name, d) in enumerate(zip(names, durs, strict=True)):
        span_id = f"{k + 1:02x}{i:014x}"
        attrs = {"hopscope.workload": WORKLOAD, "hopscope.event_id": f"{stack}-{i}", "hopscope.hop": name}
        if k == len(names) - 1:
            attrs["hopscope.subscriber"] = "sub-1"
        span = {
            "traceId": trace_id,
            "spanId": span_id,
            "name": name,
            "kind": 1,
            "startTimeUnixNano": str(t),
            "endTimeUnixNano": str(t + d),
            "attributes": _attrs(attrs),
        }
        if parent:
            span["parentSpanId"] = parent
        spans.append(span)
        parent, t = span_id, t + d
    return spans


def _write_run(run_dir: Path, rng: np.random.Generator, bad_line: bool = False) -> dict[str, np.ndarray]:
    """Spans for both stacks; returns each stack's true e2e (ms) per event."""
    (run_dir / "spans").mkdir(parents=True)
    truth = {}
    lines = []
    base = 1_780_000_000_000_000_000
    for stack, scale in (("kafka", 2.0), ("harper", 0.8)):
        durations = rng.gamma(3.0, scale / 3, size=(N_EVENTS, len(HOPS[stack])))
        if stack == "kafka":  # cdc.poll stalls now and then: the tail opens there
            durations[:, 1] += (rng.random(N_EVENTS) < 0.05) * 30.0
        dur_ns = (durations * 1e6).astype(np.int64)
        truth[stack] = (dur_ns.sum(axis=1) + 200_000) / 1e6
        spans = [
            s for i in range(N_EVENTS) for s in _event_spans(stack, i, base + i * 10_000_000, list(dur_ns[i]))
        ]
        doc = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": _attrs({"service.name": f"{stack}.pipeline", "hopscope.stack": stack})
                    },
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
                }
            ]
        }
        lines.append(json.dumps(doc))
    if bad_line:
        lines.append('{"resourceSpans": [ this is not json')
    (run_dir / "spans" / "traces.jsonl").write_text("\n".join(lines) + "\n")
    manifest = {
        "run_id": "test-run",
        "expected_hops": {s: {WORKLOAD: ["loadgen.send", *h], "fanout": h} for s, h in HOPS.items()},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return truth


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], object]:
    run_dir = tmp_path_factory.mktemp("run")
    truth = _write_run(run_dir, np.random.default_rng(11))
    result = CliRunner().invoke(app, ["analyze", str(run_dir)])
    return run_dir, truth, result


def test_analyze_ingests_analyses_and_writes_every_output(analysed) -> None:
    run_dir, _truth, result = analysed
    assert result.exit_code == 0, (result.output, "".join(traceback.format_exception(*result.exc_info)))
    for name in ("spans.parquet", "ingest_report.json", "hop_stats.parquet", "e2e.parquet", "tail_growth.parquet",
                 "quality.json", f"graph-kafka-{WORKLOAD}.graphml", f"graph-harper-{WORKLOAD}.graphml",
                 "report.html", "report.md"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert str(run_dir / "report.html") in result.output.replace("\n", "")


def test_report_headline_matches_the_written_latencies(analysed) -> None:
    run_dir, truth, _ = analysed
    e2e = pd.read_parquet(run_dir / "e2e.parquet")
    # The core recovers each event's e2e from the spans (same numbers the report uses).
    for stack in HOPS:
        got = np.sort(e2e[e2e["stack"] == stack]["e2e_ms"].to_numpy())
        assert got == pytest.approx(np.sort(truth[stack]), abs=1e-6)
    md = (run_dir / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {WORKLOAD} |"))
    k, h = truth["kafka"], truth["harper"]
    assert np.quantile(h, 0.5) < np.quantile(k, 0.5) and np.quantile(h, 0.99) < np.quantile(k, 0.99)
    assert f"harper lower, ×{np.quantile(k, 0.5) / np.quantile(h, 0.5):.2f} [" in row
    # 150 events: 1.5 beyond the p99, so no p99 figure and no p99 verdict
    assert "not shown (< 10 samples beyond)" in row
    assert "kafka: cdc.poll" in row


def test_report_html_is_self_contained_and_has_the_sections(analysed) -> None:
    run_dir, _, _ = analysed
    page = (run_dir / "report.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert f'id="workload-{WORKLOAD.replace("_", "-")}"' in page
    # fanout was expected by the manifest for both stacks but never ran: said, not omitted.
    assert "No data for stack kafka in fanout: expected hops" in page
    assert "No data for stack harper in fanout: expected hops" in page
    # CDF, latency over time, breakdown, growth, shares, 2 hop graphs; a waterfall per stack for the
    # p50, p99 and slowest of its 150 deliveries (three different ones)
    assert page.count("Plotly.newPlot(") == 7 + 2 * 3


def test_strict_fails_on_a_bad_record_and_lenient_reports_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lenient, strict = tmp_path / "lenient", tmp_path / "strict"
    _write_run(lenient, rng, bad_line=True)
    _write_run(strict, rng, bad_line=True)
    ok = CliRunner().invoke(app, ["analyze", str(lenient)])
    assert ok.exit_code == 0, ok.output
    report = json.loads((lenient / "ingest_report.json").read_text())
    skipped = sum(report["skipped"].values())
    assert skipped == 1
    assert "Ingest read 1 file(s)" in (lenient / "report.md").read_text()
    failed = CliRunner().invoke(app, ["analyze", str(strict), "--strict"])
    assert failed.exit_code == 1
    assert "traces.jsonl" in failed.output
    assert not (strict / "report.html").exists()


def test_missing_spans_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["analyze", str(tmp_path)])
    assert result.exit_code == 1
    assert "neither spans.parquet nor span files under spans/" in result.output


def test_the_analysis_never_ingests_the_command_does(tmp_path: Path) -> None:
    from hopscope.analysis import NoSpans, load
    from hopscope.analysis.report.experiment_report import write_experiment_report

    made = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--events", "20", "--no-parquet"])
    assert made.exit_code == 0, made.output
    with pytest.raises(NoSpans, match="ingest") as raised:
        load(tmp_path)
    assert raised.value.span_files
    with pytest.raises(NoSpans):  # span files left un-ingested are not "no spans": no ledger-only report
        write_experiment_report(tmp_path)
    assert not (tmp_path / "spans.parquet").exists()
    result = CliRunner().invoke(app, ["analyze", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "spans.parquet").exists() and (tmp_path / "report.md").exists()


#: a synthetic run whose hop values are constants, so each trace's Jaeger path is known exactly:
#: kafka crosses a broker (PRODUCER → CONSUMER: Jaeger prunes the consumer), harper is an RPC (the
#: client's time is split around its server's) followed by an async receive (starts after its
#: parent ended: Jaeger clips it away)
JAEGER_SYNTH = {
    "events": 200,
    "seed": 11,
    "breakage": {"orphan_rate": 0, "missing_hop_rate": 0, "duplicate_rate": 0, "skew_rate": 0, "malformed_lines": 0},
    "pairs": [
        {"stack": "kafka", "workload": "write_notify", "steps": [
            {"type": "span", "hop": "kafka.produce", "service": "loadgen", "kind": "PRODUCER",
             "dist": {"kind": "constant", "value_ms": 2.0}},
            {"type": "wait", "dist": {"kind": "constant", "value_ms": 3.0}},
            {"type": "span", "hop": "notifier.consume", "service": "notifier", "kind": "CONSUMER",
             "dist": {"kind": "constant", "value_ms": 4.0}},
        ]},
        {"stack": "harper", "workload": "write_notify", "steps": [
            {"type": "rpc", "hop": "client.put", "service": "loadgen", "server_hop": "harper.commit",
             "server_service": "harper", "dist": {"kind": "constant", "value_ms": 5.0},
             "server_dist": {"kind": "constant", "value_ms": 1.5}},
            {"type": "wait", "dist": {"kind": "constant", "value_ms": 0.5}},
            {"type": "span", "hop": "ws.receive", "service": "subscriber", "kind": "CONSUMER",
             "dist": {"kind": "constant", "value_ms": 0.25}},
        ]},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def jaeger_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`hopscope synth` (span files only) → `hopscope analyze --mode jaeger` (ingests first)."""
    import yaml

    run_dir = tmp_path_factory.mktemp("jaeger")
    (run_dir.parent / "jaeger.yaml").write_text(yaml.safe_dump(JAEGER_SYNTH))
    runner = CliRunner()
    made = runner.invoke(
        app, ["synth", "--out", str(run_dir), "--config", str(run_dir.parent / "jaeger.yaml"), "--no-parquet"]
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["analyze", str(run_dir), "--mode", "jaeger"])
    assert result.exit_code == 0, result.output
    return run_dir


def test_jaeger_mode_per_trace_paths_match_the_known_values(jaeger_run: Path) -> None:
    from hopscope.core.attributes import LOADGEN_SPAN_NAME

    paths = pd.read_parquet(jaeger_run / "jaeger_paths.parquet")
    ledger = pd.read_parquet(jaeger_run / "ledger.parquet")
    lag_ms = dict(zip(ledger["event_id"], (ledger["sent_ns"] - ledger["intended_ns"]) / 1e6, strict=True))
    ack_ms = dict(zip(ledger["event_id"], (ledger["acked_ns"] - ledger["intended_ns"]) / 1e6, strict=True))
    for stack, on_path in (
        ("kafka", {"kafka.produce": 2.0}),
        ("harper", {"client.put": 5.0, "harper.commit": 1.5}),
    ):
        p = paths[paths["stack"] == stack]
        assert p["trace_id"].nunique() == 200
        # the whole known path and nothing else: the hop after the broker / the async receive is
        # off Jaeger's path (pruned / clipped), and so is the wait before it
        assert set(p["hop"]) == {LOADGEN_SPAN_NAME, *on_path}
        for hop, value in on_path.items():
            got = p.loc[p["hop"] == hop, "value_ms"].to_numpy()
            assert len(got) == 200 and np.allclose(got, value, rtol=0, atol=1e-9), hop
        root = p[p["hop"] == LOADGEN_SPAN_NAME]
        assert np.allclose(root["value_ms"], root["event_id"].map(lag_ms), rtol=0, atol=1e-9)
        # each trace's Jaeger path runs from the intended send to the producer's ack
        assert np.allclose(p["path_ms"], p["event_id"].map(ack_ms), rtol=0, atol=1e-9)
        per_trace = p.groupby("trace_id")["value_ms"].sum()
        assert np.allclose(per_trace, p.groupby("trace_id")["path_ms"].first(), rtol=0, atol=1e-9)


def test_jaeger_mode_sits_beside_the_event_mode_figures(jaeger_run: Path) -> None:
    from hopscope.core.attributes import wait_hop

    stats = pd.read_parquet(jaeger_run / "jaeger_stats.parquet").set_index(["stack", "hop"])
    assert stats.loc[("kafka", "kafka.produce"), "traces"] == 200
    assert stats.loc[("kafka", "kafka.produce"), "p99_ms"] == pytest.approx(2.0)
    assert stats.loc[("harper", "client.put"), "mean_ms"] == pytest.approx(5.0)
    assert ("kafka", "notifier.consume") not in stats.index
    assert stats.groupby(level="stack")["crit_share"].sum().to_numpy() == pytest.approx([1.0, 1.0])
    # the event-mode attribution is unchanged: it crosses the broker and keeps the gap
    hops = pd.read_parquet(jaeger_run / "hop_stats.parquet").set_index(["stack", "hop"])
    assert hops.loc[("kafka", "notifier.consume"), "mean_ms"] == pytest.approx(4.0)
    assert hops.loc[("kafka", wait_hop("notifier.consume")), "mean_ms"] == pytest.approx(3.0)
    assert hops.loc[("harper", "ws.receive"), "mean_ms"] == pytest.approx(0.25)
    md = (jaeger_run / "report.md").read_text()
    assert "**critical path**: jaeger mode" in md
    assert "## Jaeger-mode critical paths" in md
    assert "kafka · write_notify (Jaeger mode, per trace)" in md


def test_event_mode_has_no_jaeger_outputs_and_a_bad_mode_is_refused(analysed) -> None:
    run_dir, _, _ = analysed
    assert not (run_dir / "jaeger_paths.parquet").exists()
    md = (run_dir / "report.md").read_text()
    assert "**critical path**: event mode" in md and "Jaeger-mode critical paths" not in md
    bad = CliRunner().invoke(app, ["analyze", str(run_dir), "--mode", "zipkin"])
    assert bad.exit_code == 2
    assert "choose event or jaeger" in bad.output
