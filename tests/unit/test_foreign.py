"""Foreign traces (no `hopscope.*` attribute): default hops, workloads and deliveries, messaging
links across traces, fan-out — checked against a synthetic OTel-conventions run with known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hopscope.analysis import load
from hopscope.analysis.foreign import attribute_foreign, default_hop, normalise
from hopscope.analysis.run import Run
from hopscope.core.schema import SPAN_PARQUET_OPTIONS
from hopscope.synth import foreign as fs


@pytest.fixture(scope="module")
def synth() -> fs.ForeignSynth:
    return fs.foreign_run(events=2000, seed=11)


@pytest.fixture(scope="module")
def run(synth: fs.ForeignSynth, tmp_path_factory: pytest.TempPathFactory) -> Run:
    # through spans.parquet and load(), as `hopscope analyze` reads a run directory
    rd = tmp_path_factory.mktemp("shop-run")
    pq.write_table(synth.table, rd / "spans.parquet", **SPAN_PARQUET_OPTIONS)
    return load(rd, label="shop")


@pytest.fixture(scope="module")
def truth(synth: fs.ForeignSynth) -> pd.DataFrame:
    return pd.DataFrame(synth.truth)


def test_no_hopscope_attribute_in_the_synthetic_run(synth: fs.ForeignSynth) -> None:
    t = synth.table
    for col in ("hop", "stack", "workload", "event_id"):
        assert t.column(col).null_count == t.num_rows
    keys = {k for m in t.column("attributes").to_pylist() for k, _ in m}
    assert not any(k.startswith("hopscope.") for k in keys)


def test_names_stack_and_workload(run: Run) -> None:
    hs = run.hop_stats()
    assert set(hs["stack"]) == {"shop"}
    assert set(hs["workload"]) == {fs.ROOT}
    expected = {fs.ROOT, fs.CACHE, fs.DB, fs.PUBLISH, fs.ACCOUNTING, fs.INSERT, fs.FRAUD,
                f"wait:{fs.ACCOUNTING}", f"wait:{fs.FRAUD}"}  # fmt: skip
    assert set(hs["hop"]) == expected


def test_fan_out_is_one_delivery_per_consumer_across_the_broker(run: Run, synth: fs.ForeignSynth) -> None:
    e2e = run.e2e()
    events = len(synth.truth) // 2
    assert len(e2e) == 2 * events
    assert e2e["subscriber"].value_counts().to_dict() == {fs.ACCOUNTING: events, fs.FRAUD: events}
    q = run.quality()["pairs"][f"shop/{fs.ROOT}"]
    assert q["traces"] == events  # each producer trace and its two consumer traces: one event
    assert q["deliveries_analysed"] == 2 * events
    assert q["traces_with_several_roots"] == 0 and q["complete_traces"] == events
    info = run.foreign
    assert info is not None and info.joined == 2 * events and info.traces == 3 * events


def test_hop_quantiles_match_the_truth(run: Run, truth: pd.DataFrame) -> None:
    hs = run.hop_stats().set_index("hop")
    for hop in hs.index:
        values = truth[hop].dropna().to_numpy(float) / 1e6
        assert hs.loc[hop, "count"] == len(values), hop
        for q, col in ((0.5, "p50_ms"), (0.99, "p99_ms")):
            assert hs.loc[hop, col] == pytest.approx(np.quantile(values, q), rel=1e-9, abs=1e-9), (hop, col)


def test_e2e_is_the_sum_of_the_true_hops(run: Run, truth: pd.DataFrame) -> None:
    hops = truth.drop(columns="subscriber").fillna(0).sum(axis=1).to_numpy() / 1e6
    got = run.e2e().groupby("subscriber")["e2e_ms"].apply(np.sort)
    for sub in (fs.ACCOUNTING, fs.FRAUD):
        assert got[sub] == pytest.approx(np.sort(hops[truth["subscriber"] == sub]), abs=1e-9)


def test_critical_path_shares_and_top_tail_hop_match_the_truth(run: Run, truth: pd.DataFrame) -> None:
    h = truth.drop(columns="subscriber").fillna(0)
    e = h.sum(axis=1)
    hs = run.hop_stats().set_index("hop")
    for hop in h.columns:
        assert hs.loc[hop, "crit_share"] == pytest.approx(h[hop].sum() / e.sum(), rel=1e-9)
    tail = e >= np.quantile(e, 0.99)
    share = (h[tail].mean() - h.mean()) / (e[tail].mean() - e.mean())
    assert share.idxmax() == fs.TAIL_HOP  # the drawn truth has the tail where it was put
    assert hs["tail_share_p99"].idxmax() == fs.TAIL_HOP
    for hop in h.columns:
        assert hs.loc[hop, "tail_share_p99"] == pytest.approx(share[hop], rel=1e-6, abs=1e-9)


def test_message_started_trace_is_named_by_its_destination(synth: fs.ForeignSynth) -> None:
    # without the producer traces, each consumer trace starts with its CONSUMER span
    t = synth.table
    consumer_only = t.filter(pa.compute.equal(t.column("kind"), "CONSUMER"))
    r = Run.from_table(consumer_only, label="x")
    assert set(r.hop_stats()["workload"]) == {"orders"}


def test_hopscope_own_traces_are_left_as_they_were() -> None:
    t = fs.foreign_run(events=3, seed=1).table
    own = t.set_column(t.column_names.index("stack"), "stack", pa.array(["kafka"] * t.num_rows))
    out, info = attribute_foreign(own, "x")
    assert info is None and out is own


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /users/123/orders/9", "GET /users/{n}/orders/{n}"),
        ("fetch 3f2b1c9e-1a2b-4c3d-8e9f-0123456789ab", "fetch {uuid}"),
        ("trace 4bf92f3577b34da6a3ce929d0e0e4736 done", "trace {hex} done"),
        ("SELECT * FROM t WHERE name = 'bob'", "SELECT * FROM t WHERE name = ?"),
        ("api v2 ipv4 s3", "api v2 ipv4 s3"),
        ("  spaced   out ", "spaced out"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_default_hop_semantic_conventions() -> None:
    assert (
        default_hop("api", "GET /u/7", "SERVER", {"http.route": "/u/:id", "http.method": "GET"})
        == "api GET /u/:id"
    )
    assert default_hop("w", "x", "CONSUMER", {"messaging.destination.name": "evt-42"}) == "w process evt-{n}"
    assert default_hop("w", "INSERT", "CLIENT", {"db.system": "postgresql"}) == "w postgresql INSERT"
    assert default_hop("w", "redis GET", "CLIENT", {"db.system": "redis"}) == "w redis GET"
    assert default_hop(None, "", None, {}) == "(unnamed)"
