"""The fast paths of the analysis give exactly what the plain paths give.

prepare() sorts hex-id spans by one composite integer key (trace code, span id) and finds
parents and links by one binary search in it; the plain path sorts two keys (lexsort) and
searches each trace's segment, and compares link trace ids as strings. hop_values() sums
path sections in a walkers × labels table, or by sorting when that table is too big.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from hopscope.analysis import Run, hops, id_index
from hopscope.analysis.span_arrays import PER_SPAN_VALUES, SpanArrays
from hopscope.analysis.span_file import ParquetColumns
from hopscope.analysis.spans import prepare
from hopscope.core.schema import SPAN_SCHEMA
from hopscope.synth import Breakage, SynthConfig, generate


def _general(table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> SpanArrays:
    sort_spans, trace_codes = id_index._sort_spans, id_index._trace_codes

    def lexsort_only(trace, n_traces, span_key, hex_ids):
        return sort_spans(trace, n_traces, span_key, False)

    def no_words(col):
        codes, names, _words = trace_codes(col)
        return codes, names, None

    with monkeypatch.context() as m:
        m.setattr(id_index, "_sort_spans", lexsort_only)
        m.setattr(id_index, "_trace_codes", no_words)
        return prepare(table)


def _assert_same(a: SpanArrays, b: SpanArrays) -> None:
    for name in ("trace_lo", "trace_hi", "parent", "link_parent", *PER_SPAN_VALUES):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("hop_names", "service_names", "subscriber_names", "trace_stack", "trace_workload"):
        assert list(getattr(a, name)) == list(getattr(b, name)), name
    assert a.trace_id_arrow.equals(b.trace_id_arrow)
    assert a.trace_event_arrow.equals(b.trace_event_arrow)
    assert list(a.span_ids) == list(b.span_ids)
    for key in a.counts:
        assert np.array_equal(a.counts[key], b.counts[key]), key


@pytest.fixture(scope="module")
def broken_table() -> pa.Table:
    cfg = SynthConfig.load(None)
    cfg.events, cfg.seed = 120, 3
    cfg.breakage = Breakage(
        orphan_rate=0.05, missing_hop_rate=0.05, duplicate_rate=0.05, skew_rate=0.1, malformed_lines=0
    )
    return generate(cfg).table


def test_hex_fast_path_matches_general_path(broken_table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = prepare(broken_table)
    assert fast.span_id_source[0] is None  # the fast path was taken (ids re-spelled from keys)
    _assert_same(fast, _general(broken_table, monkeypatch))


def test_chunked_table_matches_combined(broken_table: pa.Table) -> None:
    chunked = pa.concat_tables([broken_table.slice(0, 1000), broken_table.slice(1000)])
    assert chunked.column("trace_id").num_chunks > 1
    _assert_same(prepare(chunked), prepare(broken_table.combine_chunks()))


def test_chunk_without_any_parent_id(broken_table: pa.Table) -> None:
    # a chunk of roots only (all parent ids null) next to chunks with parents: parsed chunk by chunk
    roots = broken_table.filter(pa.compute.is_null(broken_table.column("parent_span_id"))).combine_chunks()
    rest = broken_table.filter(pa.compute.is_valid(broken_table.column("parent_span_id"))).combine_chunks()
    chunked = pa.concat_tables([rest.slice(0, 500), roots, rest.slice(500)])
    assert chunked.column("parent_span_id").chunk(1).null_count == len(roots) > 0
    fast = prepare(chunked)
    assert fast.span_id_source[0] is None  # still the hex fast path
    _assert_same(fast, prepare(chunked.combine_chunks()))


def test_parquet_row_groups_match_the_table(broken_table: pa.Table, tmp_path) -> None:
    import pyarrow.parquet as pq

    from hopscope.core.schema import SPAN_PARQUET_OPTIONS

    path = tmp_path / "spans.parquet"
    pq.write_table(broken_table, path, row_group_size=700, **SPAN_PARQUET_OPTIONS)
    assert pq.ParquetFile(path).metadata.num_row_groups > 2
    _assert_same(prepare(ParquetColumns(str(path))), prepare(broken_table))


def _row(trace: int, span: int, parent: int | None, start: int, end: int, **kw: object) -> dict:
    return {
        "trace_id": f"{trace:032x}",
        "span_id": f"{span:016x}",
        "parent_span_id": None if parent is None else f"{parent:016x}",
        "links": kw.pop("links", []),
        "name": kw.pop("name", f"s{span}"),
        "kind": kw.pop("kind", "INTERNAL"),
        "start_ns": start,
        "end_ns": end,
        "status": "UNSET",
        "service": "svc",
        "stack": "kafka",
        "workload": "w",
        "event_id": f"e{trace}",
        "hop": None,
        "derived": False,
        "attributes": [],
        "resource": [],
        "source": "test",
        **kw,
    }


def test_small_sequential_ids_tie_in_the_composite_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids 1, 2, 3 … share their top bits: the composite key ties and the exact order is restored."""
    rows = []
    for t in (7, 3, 5):
        rows += [
            _row(t, 3, 1, 20, 40),
            _row(t, 1, None, 0, 100),
            _row(t, 2, 1, 10, 50, kind="PRODUCER"),
            _row(t, 4, 9, 60, 70, kind="CONSUMER", links=[{"trace_id": f"{t:032x}", "span_id": f"{2:016x}"}]),
            _row(t, 2, 1, 11, 51),  # a duplicate span id: the first one in file order stays
        ]
    table = pa.Table.from_pylist(rows, schema=SPAN_SCHEMA)
    fast = prepare(table)
    _assert_same(fast, _general(table, monkeypatch))
    assert fast.counts["duplicate_span_ids"].tolist() == [1, 1, 1]
    assert fast.counts["orphan_spans"].tolist() == [1, 1, 1]
    i = list(fast.span_ids[:4]).index(f"{4:016x}")
    assert fast.span_ids[fast.link_parent[i]] == f"{2:016x}"


def test_upper_case_ids_match_general_path(broken_table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.compute as pc

    upper = broken_table.set_column(1, "span_id", pc.utf8_upper(broken_table.column("span_id")))
    fast = prepare(upper)
    assert fast.span_id_source[0] is not None  # upper-case ids keep their column for span_ids
    _assert_same(fast, _general(upper, monkeypatch))


def test_hop_values_dense_and_sorted_sums_agree(
    broken_table: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    dense = Run.from_table(broken_table)._core.values
    with monkeypatch.context() as m:
        m.setattr(hops.PathSums, "DENSE_CELLS", 0)
        by_sort = Run.from_table(broken_table)._core.values
    for name in ("delivery", "label", "value_ns", "offset_ns", "e2e_ns"):
        assert np.array_equal(getattr(dense, name), getattr(by_sort, name)), name
    assert len(dense.delivery)
