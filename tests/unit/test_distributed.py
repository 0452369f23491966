"""The analysis on Dask (`hopscope.analysis.distributed`) against the single-process path on
synthetic runs with known truth: a local cluster of 2 worker processes gives the same counts
and shares (1e-9 relative) and quantiles within the sketch's 1 %; traces split over many files
and partitions come out whole (foreign traces joined across traces too); a worker killed
mid-analysis is retried and the result is unchanged; bad input is one line, no traceback.

One cluster for the module (starting one costs seconds); small runs, so the module stays fast."""

from __future__ import annotations

import os
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

pytest.importorskip("distributed")
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from hopscope.analysis import load
from hopscope.analysis.distributed import (
    SourceError,
    analyze_distributed,
    write_distributed,
)
from hopscope.analysis.distributed import sketch as sk
from hopscope.analysis.distributed.shuffle import buckets_of
from hopscope.cli import app
from hopscope.core.schema import SPAN_PARQUET_OPTIONS
from hopscope.synth import SynthConfig, generate, write_run
from hopscope.synth import foreign as fs

EXACT = ["order", "count", "max_ms"]
CLOSE = ["mean_ms", "std_ms", "mean_offset_ms"]
#: additive shares of a pair (they sum to 1): a hop of constant time has a variance share of 0,
#: which both paths compute as rounding noise (~1e-18) — compared relative to the whole, 1e-12
SHARES = ["var_share", "tail_share_p99", "tail_share_p999", "crit_share"]
SKETCHED = ["p50_ms", "p90_ms", "p99_ms", "p999_ms"]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit="1.5GiB", dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c
    # the worker processes were started through multiprocessing, whose resource tracker stays a
    # child of this process afterwards: stopped, so later tests that count children see theirs
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    if tracker is not None and hasattr(tracker, "_stop"):
        tracker._stop()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = SynthConfig.load(None)
    cfg.events = 800
    cfg.seed = 5
    rd = tmp_path_factory.mktemp("synth-run")
    write_run(generate(cfg), rd, cfg)
    return rd


@pytest.fixture(scope="module")
def single(run_dir: Path) -> dict:
    run = load(run_dir)
    return {
        "hop_stats": run.hop_stats(),
        "e2e_summary": run.e2e_summary(),
        "tail_growth": run.tail_growth(),
        "quality": run.quality(),
    }


@pytest.fixture(scope="module")
def distributed(run_dir: Path, client: Client, tmp_path_factory: pytest.TempPathFactory):
    scratch = tmp_path_factory.mktemp("scratch")
    return analyze_distributed(str(run_dir), client=client, scratch=str(scratch), spans_per_partition=8_000)


def _rel(a: pd.Series, b: pd.Series) -> float:
    x, y = a.to_numpy(float), b.to_numpy(float)
    assert np.array_equal(np.isnan(x), np.isnan(y))
    ok = ~np.isnan(x)
    if not ok.any():
        return 0.0
    return float(np.max(np.abs(x[ok] - y[ok]) / np.maximum(np.abs(x[ok]), 1e-12)))


def assert_same_hop_stats(one: pd.DataFrame, dist: pd.DataFrame) -> None:
    assert list(one.columns) == list(dist.columns)
    m = one.merge(dist, on=["stack", "workload", "hop"], suffixes=("", "_d"), how="outer", indicator=True)
    assert (m["_merge"] == "both").all(), m[m["_merge"] != "both"][["stack", "workload", "hop", "_merge"]]
    for c in EXACT:
        assert (m[c] == m[c + "_d"]).all(), c
    for c in CLOSE:
        assert _rel(m[c], m[c + "_d"]) < 1e-9, c
    for c in SHARES:
        assert np.allclose(m[c], m[c + "_d"], rtol=1e-9, atol=1e-12, equal_nan=True), c
    for c in SKETCHED:
        assert _rel(m[c], m[c + "_d"]) <= 0.01, c


def _counts(q: dict) -> dict:
    return {k: {f: v for f, v in e.items() if f != "unattributed"} for k, e in q["pairs"].items()}


def test_two_workers_give_the_single_process_figures(single: dict, distributed) -> None:
    r = distributed.results
    assert distributed.engine.partitions > 2
    assert_same_hop_stats(single["hop_stats"], r.hop_stats)
    assert r.approximate_tails == []
    # e2e summaries and tail growth: same columns, counts exact, quantiles within the sketch's error
    e = single["e2e_summary"].merge(r.e2e_summary, on=["stack", "workload"], suffixes=("", "_d"))
    assert list(single["e2e_summary"].columns) == list(r.e2e_summary.columns)
    assert len(e) == len(single["e2e_summary"]) and (e["count"] == e["count_d"]).all()
    assert _rel(e["mean_ms"], e["mean_ms_d"]) < 1e-9
    for c in SKETCHED:
        assert _rel(e[c], e[c + "_d"]) <= 0.01
    g = single["tail_growth"].merge(r.tail_growth, on=["stack", "workload", "hop"], suffixes=("", "_d"))
    assert list(single["tail_growth"].columns) == list(r.tail_growth.columns)
    assert len(g) == len(single["tail_growth"]) and (g["order"] == g["order_d"]).all()
    for c in ("p50_ms", "p99_ms", "p999_ms"):
        assert _rel(g[c], g[c + "_d"]) <= 0.01
    # quality: every count the same; the unattributed time's moments exact, its quantiles sketched
    assert _counts(single["quality"]) == _counts(r.quality)
    for key, entry in single["quality"]["pairs"].items():
        u, v = entry["unattributed"], r.quality["pairs"][key]["unattributed"]
        assert u["n"] == v["n"] and u["max_ms"] == v["max_ms"]
        assert abs(u["p99_ms"] - v["p99_ms"]) <= 0.01 * abs(u["p99_ms"])
    assert r.quality["engine"]["quantiles"] == sk.ACCURACY_TEXT


def test_outputs_and_report_name_the_engine(distributed, tmp_path: Path) -> None:
    written = write_distributed(distributed, tmp_path)
    names = {p.name for p in written}
    assert {"hop_stats.parquet", "e2e_summary.parquet", "tail_growth.parquet", "quality.json"} <= names
    assert any(n.startswith("graph-") for n in names)
    md = (tmp_path / "report.md").read_text()
    assert "dask.distributed" in md and "DDSketch" in md
    assert pq.read_table(tmp_path / "hop_stats.parquet").num_rows == len(distributed.results.hop_stats)
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name or "shuffle" in p.name]


def _scattered(table: pa.Table, folder: Path, files: int, seed: int) -> None:
    """The spans in random order over `files` files of small row groups: every trace split."""
    rng = np.random.default_rng(seed)
    table = table.take(pa.array(rng.permutation(table.num_rows)))
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(table.num_rows), files)):
        pq.write_table(table.take(pa.array(part)), folder / f"part-{i:02d}.parquet", row_group_size=2000)


def test_traces_split_over_many_files_come_out_whole(
    run_dir: Path, single: dict, client: Client, tmp_path: Path
) -> None:
    _scattered(pq.read_table(run_dir / "spans.parquet"), tmp_path / "parts", files=7, seed=1)
    # a glob through an fsspec URL; no run directory, so no ledger: compare with the same spans alone
    a = analyze_distributed(
        f"file://{tmp_path}/parts/*.parquet",
        client=client,
        scratch=str(tmp_path / "s"),
        spans_per_partition=20_000,
    )
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "spans.parquet").symlink_to(run_dir / "spans.parquet")
    one = load(alone)
    assert_same_hop_stats(one.hop_stats(), a.results.hop_stats)
    q1, q2 = _counts(one.quality()), _counts(a.results.quality)
    assert q1 == q2  # orphans, roots, broken paths: what a split trace would show
    assert a.engine.spans == pq.read_metadata(run_dir / "spans.parquet").num_rows


def test_foreign_traces_joined_across_traces_stay_together(client: Client, tmp_path: Path) -> None:
    synth = fs.foreign_run(events=600, seed=3)
    rd = tmp_path / "shop"
    rd.mkdir()
    pq.write_table(synth.table, rd / "spans.parquet", **SPAN_PARQUET_OPTIONS)
    one = load(rd, label="shop")
    _scattered(synth.table, tmp_path / "parts", files=5, seed=2)
    a = analyze_distributed(
        str(tmp_path / "parts" / "*.parquet"), client=client, scratch=str(tmp_path / "s"),
        label="shop", spans_per_partition=1_000,
    )  # fmt: skip
    assert a.engine.partitions >= 4
    assert_same_hop_stats(one.hop_stats(), a.results.hop_stats)


def test_a_killed_worker_is_retried_and_the_result_is_unchanged(
    run_dir: Path, distributed, client: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "killed"

    class KillOnce(WorkerPlugin):
        """Ends its worker's process the first time any worker starts a pass-1 partition."""

        def __init__(self, marker: str) -> None:
            self.marker = marker

        def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
            if finish == "executing" and "pass1" in str(key) and not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)

    client.register_plugin(KillOnce(str(marker)), name="kill-once")
    try:
        again = analyze_distributed(
            str(run_dir), client=client, scratch=str(tmp_path / "s"), spans_per_partition=8_000
        )
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists()  # a worker did die mid-analysis
    client.wait_for_workers(2, timeout=60)
    a, b = distributed.results.hop_stats, again.results.hop_stats
    assert (a[EXACT + SKETCHED] == b[EXACT + SKETCHED]).all().all()  # sketches merge exactly
    for c in CLOSE:
        assert _rel(a[c], b[c]) < 1e-9
    for c in SHARES:
        assert np.allclose(a[c], b[c], rtol=1e-9, atol=1e-12, equal_nan=True), c
    assert _counts(distributed.results.quality) == _counts(again.results.quality)


def test_sketch_keys_are_ddsketchs_own_and_quantiles_within_one_percent() -> None:
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.lognormal(0, 1.5, 20_000), -rng.lognormal(0, 1, 500), np.zeros(30)])
    s = sk.of_values(v)
    pos = v[v > 0]
    assert np.array_equal(sk.keys(s, pos), [s._mapping.key(x) for x in pos])
    for q in (0.001, 0.5, 0.9, 0.99, 0.999):
        exact = np.quantile(v, q)
        assert abs(sk.quantile(s, q, v.min(), v.max()) - exact) <= 0.01 * abs(exact)
    halves = sk.merged([sk.of_values(v[::2]), sk.of_values(v[1::2])])
    assert sk.quantile(halves, 0.99) == sk.quantile(s, 0.99)


def test_a_trace_id_always_lands_in_one_bucket() -> None:
    ids = pa.array(
        ["0af7651916cd43dd8448eb211c80319c", "0AF7651916CD43DD8448EB211C80319C", "not-hex", "not-hex"]
    )
    b = buckets_of(ids, 16)
    assert b[0] == b[1] and b[2] == b[3]
    assert buckets_of(pa.array(["x"]), 16, {"x": "0af7651916cd43dd8448eb211c80319c"})[0] == b[0]


def test_bad_input_is_one_line(tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hopscope.analysis.distributed import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    runner = CliRunner()
    cases = [
        (
            [f"{tmp_path}/none/*.parquet", "--cluster", "tcp://127.0.0.1:9", "--out", str(tmp_path / "o")],
            "cannot reach a Dask scheduler",
        ),
        (
            [str(run_dir / "ledger.parquet"), "--workers", "1", "--out", str(tmp_path / "o")],
            "not a span table",
        ),
        ([str(run_dir), "--workers", "1", "--worker-memory", "100MiB"], "at least 1 GiB"),
        ([str(run_dir), "--workers", "0"], "--workers"),
        ([str(run_dir), "--workers", "1", "--cluster", "tcp://127.0.0.1:9"], "not both"),
        ([str(run_dir), "--scratch", "/tmp"], "only with --cluster or --workers"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, ["analyze", *args])
        assert result.exit_code in (1, 2), result.output
        assert expected in result.output, result.output
        assert "Traceback" not in result.output


def test_an_empty_glob_is_a_source_error(tmp_path: Path) -> None:
    from hopscope.analysis.distributed.sources import resolve

    with pytest.raises(SourceError, match="no file matches"):
        resolve(f"{tmp_path}/*.parquet")
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="cannot read as Parquet"):
        resolve(f"{tmp_path}/*.parquet")
