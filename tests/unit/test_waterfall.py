"""Single deliveries as waterfalls (`Run.trace`, `Run.delivery_waterfalls`, `hopscope trace`),
checked against synthetic runs whose hop latencies are known: a constant-valued run (every
offset, duration and critical-path section follows from the configuration) and the default
run (the waterfall's path is the one the hop statistics sum)."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hopscope.analysis import Run, load
from hopscope.analysis.report.waterfall_plot import shown_rows, waterfall_figure
from hopscope.analysis.run import SAMPLE_PICKS, UnknownTrace
from hopscope.analysis.waterfall import WATERFALL_COLUMNS
from hopscope.cli import app
from hopscope.core.schema import SPAN_PARQUET_OPTIONS
from hopscope.synth import Breakage, Dist, Fanout, PairSpec, Step, SynthConfig, generate, write_run
from hopscope.synth import foreign as fs

NO_BREAKAGE = Breakage(orphan_rate=0, missing_hop_rate=0, duplicate_rate=0, skew_rate=0, malformed_lines=0)

# the constant run: the load generator's send lag (drawn: the e2e must vary for synth's truth), a
# request (client put with a server commit inside), a wait for the broker, the publish, then per
# subscriber a wait and the receive (ms)
PUT, COMMIT, WAIT_BROKER, PUBLISH, WAIT_SUB, RECEIVE = 0.4, 1.2, 3.0, 0.5, 2.0, 0.25
AFTER_LAG = PUT + COMMIT + WAIT_BROKER + PUBLISH + WAIT_SUB + RECEIVE


def constant(ms: float) -> Dist:
    return Dist("constant", value_ms=ms)


def constant_config(events: int = 60) -> SynthConfig:
    pair = PairSpec(
        "a",
        "w",
        [
            Step("rpc", "put", "client", "CLIENT", constant(PUT), server_hop="commit", server_service="db",
                 server_dist=constant(COMMIT)),
            Step("wait", dist=constant(WAIT_BROKER)),
            Step("span", "publish", "broker", "PRODUCER", constant(PUBLISH)),
        ],
        Fanout(2, 1.0, [Step("wait", dist=constant(WAIT_SUB)), Step("span", "receive", "sub", "CONSUMER", constant(RECEIVE))]),
        rate_per_s=200.0,
        send_lag=Dist("exponential", mean_ms=0.1),
    )  # fmt: skip
    cfg = SynthConfig(events=events, seed=3, breakage=NO_BREAKAGE, unattributed_floor_ms=0.0)
    cfg.pairs = [pair]
    return cfg


@pytest.fixture(scope="module")
def constant_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    cfg = constant_config()
    synth = generate(cfg)
    out = tmp_path_factory.mktemp("constant-run")
    write_run(synth, out, cfg)
    return out, synth


@pytest.fixture(scope="module")
def default_run() -> Run:
    cfg = SynthConfig.load(None)
    cfg.events, cfg.seed = 600, 5  # with the default breakage: orphans, skew, duplicates
    synth = generate(cfg)
    return Run.from_table(synth.table, manifest=synth.manifest, ledger=synth.ledger.to_pandas())


def _truth_of(synth, trace_id: str) -> pd.DataFrame:
    """The synthetic span table's rows of one trace, offsets from its root's start (ms)."""
    t = synth.table.to_pandas()
    t = t[t["trace_id"] == trace_id]
    root = t[t["parent_span_id"].isna()]["start_ns"].iloc[0]
    return t.assign(
        start_ms=(t["start_ns"] - root) / 1e6, duration_ms=(t["end_ns"] - t["start_ns"]) / 1e6
    ).set_index("span_id")


def test_waterfall_rows_offsets_durations_and_path_match_the_constant_run(constant_dir) -> None:
    out, synth = constant_dir
    run = load(out)
    trace_id = str(run.e2e()["trace_id"].iloc[7])
    spans = run.trace(trace_id, subscriber="sub-1")
    assert list(spans.columns) == WATERFALL_COLUMNS
    truth = _truth_of(synth, trace_id)
    # rows: every span of the event once, each with its own parent, offset and duration
    assert sorted(spans["span_id"]) == sorted(truth.index)
    by_id = spans.set_index("span_id")
    for sid, rec in truth.iterrows():
        got = by_id.loc[sid]
        assert got["parent_span_id"] == (None if pd.isna(rec["parent_span_id"]) else rec["parent_span_id"])
        assert got["hop"] == rec["hop"] and got["service"] == rec["service"] and got["kind"] == rec["kind"]
        assert got["start_ms"] == pytest.approx(rec["start_ms"], abs=1e-9)
        assert got["duration_ms"] == pytest.approx(rec["duration_ms"], abs=1e-9)
    # Jaeger's order: root, put, commit (inside put), publish, the two receives; depth by parent
    assert list(spans["hop"]) == ["loadgen.send", "put", "commit", "publish", "receive", "receive"]
    assert list(spans["depth"]) == [0, 1, 2, 2, 3, 3]
    hop = spans.set_index("hop")
    lag = hop.loc["put", "start_ms"]  # the one drawn value: when the client's request began
    assert hop.loc["publish", "start_ms"] == pytest.approx(lag + PUT + COMMIT + WAIT_BROKER, abs=1e-6)
    # the critical path of sub-1's delivery: each span's own time, the waits before the spans they name
    receive = spans[spans["hop"] == "receive"]
    mine = receive[receive["subscriber"] == "sub-1"].iloc[0]
    other = receive[receive["subscriber"] == "sub-0"].iloc[0]
    assert mine["is_delivery"] and not other["is_delivery"]
    assert not other["on_critical_path"] and other["critical_ms"] == 0
    expected = {"loadgen.send": (lag, 0.0), "put": (PUT, 0.0), "commit": (COMMIT, 0.0),
                "publish": (PUBLISH, WAIT_BROKER)}  # fmt: skip
    for name, (own, wait) in expected.items():
        assert hop.loc[name, "critical_ms"] == pytest.approx(own, abs=1e-6), name
        assert hop.loc[name, "wait_before_ms"] == pytest.approx(wait, abs=1e-6), name
    assert mine["critical_ms"] == pytest.approx(RECEIVE, abs=1e-6)
    assert mine["wait_before_ms"] == pytest.approx(WAIT_SUB, abs=1e-6)
    assert mine["wait_sections"] == [pytest.approx([mine["start_ms"] - WAIT_SUB, mine["start_ms"]], abs=1e-6)]
    # the put's own time is in two sections around its server span
    assert len(hop.loc["put", "path_sections"]) == 2
    assert spans["e2e_ms"].iloc[0] == pytest.approx(lag + AFTER_LAG, abs=1e-6)
    assert spans["critical_ms"].sum() + spans["wait_before_ms"].sum() == pytest.approx(
        lag + AFTER_LAG, abs=1e-6
    )
    # the receive links to the producer span: a link the figure draws as an arrow
    publish_id = hop.loc["publish", "span_id"]
    assert set(receive["link_span_id"]) == {publish_id}


def test_default_delivery_is_the_slowest_and_reading_one_trace_gives_the_same_waterfall(constant_dir) -> None:
    out, _ = constant_dir
    whole = load(out)
    trace_id = str(whole.e2e()["trace_id"].iloc[3])
    one = load(out, traces=[trace_id.upper()])  # any spelling of the id
    assert len(one.e2e()) == 2  # only that event's two deliveries were read
    a, b = whole.trace(trace_id), one.trace(trace_id.upper())
    pd.testing.assert_frame_equal(a, b)
    # both deliveries take equally long here: the first of them is marked, and it is a delivery
    assert (
        a["is_delivery"].sum() == 1 and a.loc[a["is_delivery"], "subscriber"].iloc[0] == a["delivery"].iloc[0]
    )


def test_unknown_trace_and_unknown_subscriber_are_named(constant_dir) -> None:
    out, _ = constant_dir
    run = load(out, traces=["00000000000000000000000000000bad"])
    with pytest.raises(UnknownTrace, match="no such trace"):
        run.trace("00000000000000000000000000000bad")
    run = load(out)
    trace_id = str(run.e2e()["trace_id"].iloc[0])
    with pytest.raises(
        UnknownTrace, match=r"no delivery to subscriber 'sub-9' \(its deliveries: sub-0, sub-1\)"
    ):
        run.trace(trace_id, subscriber="sub-9")


def test_samples_are_the_nearest_rank_deliveries_of_each_pair(default_run: Run) -> None:
    samples = default_run.sample_deliveries()
    e2e = default_run.e2e()
    assert set(zip(samples["stack"], samples["workload"], strict=True)) == set(default_run.pairs())
    for (stack, workload), picked in samples.groupby(["stack", "workload"]):
        values = np.sort(e2e[(e2e["stack"] == stack) & (e2e["workload"] == workload)]["e2e_ms"].to_numpy())
        n = len(values)
        assert (picked["deliveries"] == n).all()
        for label, q in SAMPLE_PICKS:
            row = picked[picked["pick"].str.split(", ").map(lambda names, lab=label: lab in names)]
            assert len(row) == 1, (stack, workload, label)
            assert row["e2e_ms"].iloc[0] == pytest.approx(values[math.ceil(q * n) - 1], abs=1e-9)


def test_each_waterfall_path_is_what_the_hop_statistics_sum(default_run: Run) -> None:
    """Per sampled delivery: Σ path + waits = e2e, and per hop the waterfall's time equals the
    delivery's row in hop_values() (the walk the statistics come from, natively where built)."""
    w = default_run.delivery_waterfalls()
    hv = default_run.hop_values()
    assert len(w.groupby(["stack", "workload", "pick"])) == len(default_run.sample_deliveries())
    for (_stack, _workload, _pick), spans in w.groupby(["stack", "workload", "pick"], sort=False):
        head = spans.iloc[0]
        assert spans["critical_ms"].sum() + spans["wait_before_ms"].sum() == pytest.approx(
            head["e2e_ms"], abs=1e-6
        )
        per_hop = spans.groupby("hop")["critical_ms"].sum()
        waits = spans.groupby("hop")["wait_before_ms"].sum().rename(lambda h: f"wait:{h}")
        mine = pd.concat([per_hop, waits])
        mine = mine[mine > 0]
        sub = hv[
            (hv["trace_id"] == head["trace_id"]) & (hv["subscriber"].fillna("") == (head["delivery"] or ""))
        ]
        assert mine.sort_index().to_dict() == pytest.approx(
            sub.set_index("hop")["value_ms"].sort_index().to_dict(), abs=1e-6
        )


def test_foreign_event_waterfall_spans_the_linked_consumer_traces(tmp_path: Path) -> None:
    synth = fs.foreign_run(events=50, seed=4)
    pq.write_table(synth.table, tmp_path / "spans.parquet", **SPAN_PARQUET_OPTIONS)
    run = load(tmp_path, traces=["anything"])  # foreign: read whole, the consumers join their producer
    e2e = run.e2e()
    row = e2e[e2e["subscriber"] == fs.ACCOUNTING].iloc[0]
    spans = run.trace(row["trace_id"], subscriber=fs.ACCOUNTING)
    # the producer trace's 4 spans and both consumer traces' (3): one event
    assert len(spans) == 7
    consumers = spans[spans["kind"] == "CONSUMER"]
    producer = spans[spans["kind"] == "PRODUCER"]["span_id"].iloc[0]
    assert set(consumers["link_span_id"]) == {producer} and set(consumers["parent_span_id"]) == {None}
    assert (consumers["depth"] == 2).all()  # under the producer, through the link
    assert spans["e2e_ms"].iloc[0] == pytest.approx(row["e2e_ms"], abs=1e-9)
    path = spans["critical_ms"].sum() + spans["wait_before_ms"].sum()
    assert path == pytest.approx(row["e2e_ms"], abs=1e-6)


def test_figure_draws_the_path_the_waits_and_the_links(constant_dir) -> None:
    out, _ = constant_dir
    spans = load(out).trace(str(load(out).e2e()["trace_id"].iloc[0]))
    fig = waterfall_figure(spans)
    assert fig is not None
    bars = {t.name: t for t in fig.data}
    sections = sum(len(s) for s in spans["path_sections"])
    assert len(bars["span"].y) == len(spans)
    assert len(bars["critical path"].y) == sections
    assert list(bars["wait (gap)"].x) == pytest.approx([WAIT_BROKER, WAIT_SUB], abs=1e-6)
    assert len(fig.layout.annotations) == spans["link_span_id"].notna().sum() == 2
    # a long trace keeps every row of the path
    kept, left_out = shown_rows(spans, limit=4)
    assert (
        left_out == len(spans) - len(kept)
        and kept["on_critical_path"].sum() == spans["on_critical_path"].sum()
    )


def test_trace_command_prints_the_spans_and_fails_cleanly(constant_dir) -> None:
    out, synth = constant_dir
    trace_id = str(load(out).e2e()["trace_id"].iloc[5])
    runner = CliRunner()
    env = {"HOPSCOPE_JAEGER__QUERY_PORT": "17777", "HOPSCOPE_CONFIG": ""}
    done = runner.invoke(app, ["trace", str(out), trace_id], env=env)
    assert done.exit_code == 0, done.output
    assert f"trace {trace_id}" in done.output
    assert f"http://127.0.0.1:17777/trace/{trace_id}" in done.output
    lines = done.output.splitlines()
    for hop in ("loadgen.send", "put", "commit", "publish"):
        assert any(f": {hop}" in line for line in lines), hop
    assert sum("sub: receive" in line for line in lines) == 2
    lag = _truth_of(synth, trace_id).query("hop == 'put'")["start_ms"].iloc[0]
    assert f"e2e {lag + AFTER_LAG:.2f} ms" in done.output

    as_json = runner.invoke(app, ["trace", str(out), trace_id, "--json", "--subscriber", "sub-0"], env=env)
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert len(rows) == len(_truth_of(synth, trace_id)) and rows[0]["delivery"] == "sub-0"

    for args, code, message in (
        ([str(out), "ffffffffffffffffffffffffffffffff"], 2, "error: trace 'ffffffffffffffffffffffffffffffff': no such trace"),
        ([str(out), trace_id, "--subscriber", "nobody"], 2, "no delivery to subscriber 'nobody'"),
        ([str(out / "missing"), trace_id], 1, "error: "),
    ):  # fmt: skip
        bad = runner.invoke(app, ["trace", *args], env=env)
        assert bad.exit_code == code, bad.output
        assert message in bad.stderr and "Traceback" not in bad.output + bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_report_links_each_sampled_delivery_to_jaeger_and_tempo(constant_dir, tmp_path: Path) -> None:
    out, _ = constant_dir
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    runner = CliRunner()
    env = {"HOPSCOPE_JAEGER__QUERY_PORT": "17777", "HOPSCOPE_CONFIG": ""}
    tempo = "https://grafana.example/explore?left=%7B%22query%22:%22{trace_id}%22%7D"
    bad = runner.invoke(
        app, ["analyze", str(run_dir), "--tempo-url-template", "https://grafana.example/x"], env=env
    )
    assert (
        bad.exit_code == 2
        and "error: --tempo-url-template https://grafana.example/x: no {trace_id}" in bad.stderr
    )
    done = runner.invoke(app, ["analyze", str(run_dir), "--tempo-url-template", tempo], env=env)
    assert done.exit_code == 0, done.output
    page = (run_dir / "report.html").read_text()
    links = re.findall(
        r'<a class="trace-link" data-ui="(\w+)" data-trace-id="([0-9a-f]+)" href="([^"]+)"', page
    )
    samples = load(run_dir).sample_deliveries()  # p50, p99, slowest of the one pair
    assert len(samples) == 3 and page.count('<p class="waterfall-head">') == 3
    # (p99 and slowest may be the two equally long deliveries of one event: one trace)
    sampled = set(samples["trace_id"])
    assert [tid for _, tid, _ in links] == [tid for tid in samples["trace_id"] for _ in ("Jaeger", "Tempo")]
    for ui, tid, href in links:
        want = f"http://127.0.0.1:17777/trace/{tid}" if ui == "Jaeger" else tempo.replace("{trace_id}", tid)
        assert html.unescape(href) == want
    assert [ui for ui, _, _ in links] == ["Jaeger", "Tempo"] * 3
    markdown = (run_dir / "report.md").read_text()
    assert all(f"[Jaeger](http://127.0.0.1:17777/trace/{tid})" in markdown for tid in sampled)


def test_a_run_with_every_latency_constant_generates(tmp_path: Path) -> None:
    """No variance at all: every tail share is undefined, so the truth names no top tail hop
    (it used to stop synth with numpy's 'All-NaN slice')."""
    from dataclasses import replace

    cfg = constant_config(20)
    cfg.pairs = [replace(p, send_lag=constant(0.1)) for p in cfg.pairs]
    cfg.unattributed = constant(0.03)
    data = generate(cfg)
    (truth,) = data.truth["pairs"].values()
    assert truth["top_tail_hop_p99"] is None and truth["top_tail_hop_p999"] is None
    assert truth["e2e_ms"]["p50_ms"] == truth["e2e_ms"]["p99_ms"]
