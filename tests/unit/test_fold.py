"""Library spans (contrib instrumentations: no `hopscope.hop`) fold into the hop that contains them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from test_hops import EXPECTED, row, sid, trace_rows

from hopscope.analysis import Run
from hopscope.analysis.fold import library_spans
from hopscope.analysis.spans import prepare
from hopscope.core.schema import SPAN_SCHEMA


def library(span: int, parent: int, start: int, end: int, name: str, service: str) -> dict:
    return {**row(span, parent, start, end, name, "CLIENT", service), "hop": None}


def rows_with_libraries() -> list[dict]:
    rows = trace_rows()
    # psycopg-like INSERT inside `produce`, and a nested library call inside that one
    rows += [library(7, 2, 15, 35, "INSERT", "gen"), library(8, 7, 20, 30, "SELECT", "gen")]
    # the consumer names the nested library span as parent and link (an httpx-style inject)
    consume = next(r for r in rows if r["span_id"] == sid(3))
    consume["parent_span_id"] = sid(8)
    consume["links"] = [{"trace_id": consume["trace_id"], "span_id": sid(7)}]
    rows.append(library(9, 4, 71, 74, "PUBLISH", "svc"))  # redis-like PUBLISH inside `publish`
    return rows


def test_folded_spans_leave_the_hops_unchanged() -> None:
    run = Run.from_table(pa.Table.from_pylist(rows_with_libraries(), schema=SPAN_SCHEMA))
    hv = run.hop_values()
    assert not {"INSERT", "SELECT", "PUBLISH"} & set(hv["hop"])
    for sub, expected in EXPECTED.items():
        got = hv[hv["subscriber"] == sub].groupby("hop")["value_ms"].sum() * 1e6
        assert got.round().astype(int).to_dict() == expected
    e2e = run.e2e().set_index("subscriber")["e2e_ms"] * 1e6
    assert e2e.round().astype(int).to_dict() == {"a": 90, "b": 95}
    quality = run.quality()["pairs"]["s/w"]
    assert quality["library_spans_folded"] == 3
    assert quality["orphan_spans"] == 0 and quality["complete_traces"] == 1


def test_parents_and_links_move_to_the_anchor() -> None:
    sa = prepare(pa.Table.from_pylist(rows_with_libraries(), schema=SPAN_SCHEMA))
    ids = [str(s) for s in sa.span_ids]
    assert ids == [sid(i) for i in range(1, 7)]
    consume = ids.index(sid(3))
    assert ids[sa.parent[consume]] == sid(2)
    assert ids[sa.link_parent[consume]] == sid(2)
    assert (sa.trace_lo.tolist(), sa.trace_hi.tolist()) == ([0], [6])


def test_traces_without_hop_attributes_fold_nothing() -> None:
    rows = [{**r, "hop": None} for r in trace_rows()]
    sa = prepare(pa.Table.from_pylist(rows, schema=SPAN_SCHEMA))
    assert sa.n == len(rows)
    assert sa.counts["folded_library_spans"].tolist() == [0]
    assert sorted(sa.hop_names[sa.hop].tolist()) == sorted(r["name"] for r in rows)


def test_library_root_or_library_under_library_root_is_not_folded() -> None:
    # 0: hop root; 1: library under it; 2: a library root; 3: library under that root
    parent = np.array([-1, 0, -1, 2])
    hop_attr = np.array([True, False, False, False])
    folded, anchor = library_spans(parent, hop_attr)
    assert folded.tolist() == [False, True, False, False]
    assert anchor.tolist() == [0, 0, 2, 3]
