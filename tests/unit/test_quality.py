"""Quality counts on hand-built broken traces, and clock-skew correction like Jaeger's adjuster."""

from __future__ import annotations

import pyarrow as pa
from test_hops import row

from hopscope.analysis import Run
from hopscope.analysis.clock_skew import correct
from hopscope.analysis.spans import prepare
from hopscope.core.schema import SPAN_SCHEMA


def test_counts() -> None:
    t1, t2 = "a" * 32, "b" * 32
    rows = [
        row(1, None, 0, 100, "loadgen", "CLIENT", "gen", trace=t1),
        row(2, 1, 10, 50, "call", "CLIENT", "gen", trace=t1),
        row(2, 1, 10, 50, "call", "CLIENT", "gen", trace=t1),  # duplicate id
        row(3, 2, 30, 20, "work", "SERVER", "srv", trace=t1),  # negative duration
        row(4, 9, 60, 70, "lost", "INTERNAL", "srv", trace=t1),  # orphan (parent 9 absent)
        row(1, None, 0, 100, "loadgen", "CLIENT", "gen", trace=t2),
        row(2, 1, 10, 50, "call", "CLIENT", "gen", trace=t2),
    ]
    run = Run.from_table(
        pa.Table.from_pylist(rows, schema=SPAN_SCHEMA),
        manifest={"expected_hops": {"s": {"w": ["loadgen", "call", "wait:work", "work"]}}},
        ingest_report={"skipped": {"bad_json": 3, "missing_field": 1}},
    )
    q = run.quality()
    p = q["pairs"]["s/w"]
    assert p["traces"] == 2
    assert p["duplicate_span_ids"] == 1
    assert p["negative_durations"] == 1
    assert p["orphan_spans"] == 1
    assert p["missing_expected_hops"] == 1 and p["missing_expected_hops_by_hop"] == {"work": 1}
    assert p["complete_traces"] == 0
    assert q["ingest"]["malformed_records"] == 4


def test_skew_centres_a_sync_child_and_shifts_its_subtree() -> None:
    rows = [
        row(1, None, 1000, 1100, "call", "CLIENT", "client"),
        row(2, 1, 900, 960, "serve", "SERVER", "server"),  # server clock 120 ns behind
        row(3, 2, 910, 950, "inner", "INTERNAL", "server"),  # same host: moves with it
        row(4, 1, 1010, 1020, "fine", "INTERNAL", "client"),
    ]
    sa = prepare(pa.Table.from_pylist(rows, schema=SPAN_SCHEMA))
    res = correct(sa)
    by = {str(sa.span_ids[i]): i for i in range(sa.n)}
    s2, s3 = by["0000000000000002"], by["0000000000000003"]
    # centred: start = 1000 + (100 − 60) / 2
    assert (res.start[s2], res.end[s2]) == (1020, 1080)
    assert (res.start[s3], res.end[s3]) == (1030, 1070)
    assert res.corrected.sum() == 1


def test_skew_on_async_edge_moves_consumer_to_producer_start_only() -> None:
    rows = [
        row(1, None, 1000, 1100, "produce", "PRODUCER", "a"),
        row(2, 1, 950, 990, "consume", "CONSUMER", "b", link=1),
    ]
    sa = prepare(pa.Table.from_pylist(rows, schema=SPAN_SCHEMA))
    res = correct(sa)
    i = next(i for i in range(sa.n) if str(sa.span_ids[i]) == "0000000000000002")
    assert (res.start[i], res.end[i]) == (1000, 1040)
    assert res.corrected.sum() == 1
