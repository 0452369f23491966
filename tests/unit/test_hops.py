"""Hop contributions on a hand-built async trace: waits, links, fan-out, graph and outputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pyarrow as pa
import pytest

from hopscope.analysis import Run
from hopscope.analysis.critical_path import jaeger_paths
from hopscope.analysis.spans import prepare
from hopscope.core.schema import SPAN_SCHEMA

T = "0123456789abcdef0123456789abcdef"


def sid(n: int) -> str:
    return f"{n:016x}"


def row(
    span: int,
    parent: int | None,
    start: int,
    end: int,
    hop: str,
    kind: str,
    service: str,
    subscriber: str | None = None,
    link: int | None = None,
    trace: str = T,
) -> dict:
    return {
        "trace_id": trace,
        "span_id": sid(span),
        "parent_span_id": sid(parent) if parent else None,
        "links": [{"trace_id": trace, "span_id": sid(link)}] if link else [],
        "name": hop,
        "kind": kind,
        "start_ns": start,
        "end_ns": end,
        "status": "UNSET",
        "service": service,
        "stack": "s",
        "workload": "w",
        "event_id": "e1",
        "hop": hop,
        "derived": False,
        "attributes": [("hopscope.subscriber", subscriber)] if subscriber else [],
        "resource": [],
        "source": "test",
    }


def trace_rows(consumer_parent: int | None = 2, trace: str = T) -> list[dict]:
    return [
        row(1, None, 0, 50, "loadgen", "CLIENT", "gen", trace=trace),
        row(2, 1, 10, 40, "produce", "PRODUCER", "gen", trace=trace),
        row(3, consumer_parent, 60, 70, "consume", "CONSUMER", "svc", link=2, trace=trace),
        row(4, 3, 70, 75, "publish", "PRODUCER", "svc", trace=trace),
        row(5, 4, 80, 90, "receive", "CONSUMER", "sub", subscriber="a", trace=trace),
        row(6, 4, 78, 95, "receive", "CONSUMER", "sub", subscriber="b", trace=trace),
    ]


EXPECTED = {
    "a": {
        "loadgen": 10,
        "produce": 30,
        "wait:consume": 20,
        "consume": 10,
        "publish": 5,
        "wait:receive": 5,
        "receive": 10,
    },
    "b": {
        "loadgen": 10,
        "produce": 30,
        "wait:consume": 20,
        "consume": 10,
        "publish": 5,
        "wait:receive": 3,
        "receive": 17,
    },
}


@pytest.mark.parametrize("consumer_parent", [2, None], ids=["child-and-link", "link-only"])
def test_event_contributions(consumer_parent: int | None) -> None:
    run = Run.from_table(pa.Table.from_pylist(trace_rows(consumer_parent), schema=SPAN_SCHEMA))
    hv = run.hop_values()
    for sub, expected in EXPECTED.items():
        got = hv[hv["subscriber"] == sub].groupby("hop")["value_ms"].sum() * 1e6
        assert got.round().astype(int).to_dict() == expected
    e2e = run.e2e().set_index("subscriber")["e2e_ms"] * 1e6
    assert e2e.round().astype(int).to_dict() == {"a": 90, "b": 95}


def test_jaeger_mode_on_the_same_trace_stops_at_the_producer() -> None:
    sa = prepare(pa.Table.from_pylist(trace_rows(), schema=SPAN_SCHEMA))
    sec, _ = jaeger_paths(sa)
    got = [
        (str(sa.span_ids[s]), int(a), int(b)) for s, a, b in zip(sec.span, sec.start, sec.end, strict=True)
    ]
    assert got == [(sid(1), 40, 50), (sid(2), 10, 40), (sid(1), 0, 10)]


def test_stats_graph_and_outputs(tmp_path: Path) -> None:
    rows = []
    for k in range(30):
        t = f"{k + 1:032x}"
        for r in trace_rows(trace=t):
            shift = k * 1000
            r = {
                **r,
                "start_ns": r["start_ns"] + shift,
                "end_ns": r["end_ns"] + shift + (k if r["hop"] == "consume" else 0),
                "event_id": f"e{k}",
            }
            rows.append(r)
    # the consumer's extra time k pushes every later span of the trace by k
    for r in rows:
        if r["hop"] in ("publish", "receive"):
            k = int(r["trace_id"], 16) - 1
            r["start_ns"] += k
            r["end_ns"] += k
    run = Run.from_table(
        pa.Table.from_pylist(rows, schema=SPAN_SCHEMA),
        manifest={"expected_hops": {"s": {"w": ["loadgen", "produce", "wait:consume", "consume"]}}},
    )
    stats = run.hop_stats().set_index("hop")
    assert stats.loc["consume", "count"] == 60  # 30 events × 2 deliveries
    k = np.repeat(np.arange(30.0), 2)
    e = k + np.tile([90.0, 95.0], 30)
    h = 10.0 + k
    assert stats.loc["consume", "var_share"] == pytest.approx(np.cov(h, e, bias=True)[0, 1] / e.var())
    tail = e >= np.quantile(e, 0.99)
    assert stats.loc["consume", "tail_share_p99"] == pytest.approx(
        (h[tail].mean() - h.mean()) / (e[tail].mean() - e.mean())
    )
    assert stats.loc["produce", "var_share"] == pytest.approx(0.0, abs=1e-12)
    assert list(stats.sort_values("order").index) == [
        "loadgen",
        "produce",
        "wait:consume",
        "consume",
        "publish",
        "wait:receive",
        "receive",
    ]
    growth = run.tail_growth()
    assert growth.iloc[-1]["p50_ms"] == pytest.approx(run.e2e()["e2e_ms"].quantile(0.5))

    g = run.graph("s", "w")
    assert g.number_of_edges() == 7 and g.number_of_nodes() == 8
    assert nx.is_directed_acyclic_graph(g)
    path = nx.dag_longest_path(g)
    hops_on_path = [g.edges[u, v]["hop"] for u, v in itertools.pairwise(path)]
    assert hops_on_path[0] == "loadgen" and hops_on_path[-1] == "receive"

    written = run.write_outputs(tmp_path)
    names = sorted(p.name for p in written)
    assert names == [
        "e2e.parquet",
        "e2e_summary.parquet",
        "estimates.parquet",
        "graph-s-w.graphml",
        "hop_stats.parquet",
        "quality.json",
        "tail_growth.parquet",
        "verdicts.parquet",
    ]
    g2 = nx.read_graphml(tmp_path / "graph-s-w.graphml")
    assert g2.number_of_edges() == 7
    q = json.loads((tmp_path / "quality.json").read_text())
    assert q["pairs"]["s/w"]["complete_traces"] == 30
