"""The native span-tree kernels (analysis/native) give exactly the numpy versions' arrays."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from hopscope.analysis import clock_skew, kernels
from hopscope.analysis.critical_path import event_paths
from hopscope.analysis.hops import PathSums
from hopscope.analysis.span_arrays import CONSUMER, PRODUCER
from hopscope.analysis.spans import prepare
from hopscope.analysis.tree import levels, top_of
from hopscope.synth import Breakage, SynthConfig, generate

# Built by bin/bootstrap; the comparisons are skipped only on a machine without cargo (the
# first test, not skipped, fails where cargo is but the kernels were not built) or where
# HOPSCOPE_NATIVE=0 turns the kernels off to test the numpy path alone.
native = pytest.mark.skipif(
    not kernels.AVAILABLE, reason="analysis/native not built (no cargo) or turned off (HOPSCOPE_NATIVE=0)"
)


def test_kernels_are_built_where_cargo_is() -> None:
    assert kernels._native is not None or shutil.which("cargo") is None


def _numpy_results(sa, targets: np.ndarray, start: np.ndarray, end: np.ndarray, n_labels: int):
    top = top_of(sa.event_parent, levels(sa.event_parent, np.ones(sa.n, dtype=bool)))
    delta, corrected = clock_skew._shifts_by_level(sa)
    sums = PathSums(len(targets), n_labels)
    event_paths(sa, targets, start, end, sink=sums.add)
    return top, delta, corrected, sums.result()


def _compare(sa, targets: np.ndarray, start: np.ndarray, end: np.ndarray) -> int:
    n_labels = 2 * len(sa.hop_names)
    top, delta, corrected, sums = _numpy_results(sa, targets, start, end, n_labels)
    np.testing.assert_array_equal(kernels.event_roots(sa), top)
    got_delta, got_corrected = kernels.skew_shifts(sa)
    np.testing.assert_array_equal(got_delta, delta)
    np.testing.assert_array_equal(got_corrected, corrected)
    got = kernels.event_path_sums(sa, targets, start, end, n_labels)
    for name, a, b in zip(("walker", "label", "total", "first"), got[:4], sums, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    walker, total = sums[0], sums[2]
    np.testing.assert_array_equal(got[4], np.bincount(walker, weights=total, minlength=len(targets)))
    np.testing.assert_array_equal(got[5], np.bincount(walker, minlength=len(targets)))
    # rows named by the caller's ids, first starts relative to the caller's origins
    ids, origin = np.arange(len(targets)) * 7 + 3, np.arange(len(targets)) * 11
    mapped = kernels.event_path_sums(sa, targets, start, end, n_labels, ids=ids, origin=origin)
    np.testing.assert_array_equal(mapped[0], ids[walker])
    np.testing.assert_array_equal(mapped[3], sums[3] - origin[walker])
    return len(sums[0])


@native
def test_synthetic_run_with_breakage() -> None:
    cfg = SynthConfig.load(None)
    cfg.events, cfg.seed = 300, 5
    cfg.breakage = Breakage(
        orphan_rate=0.05, missing_hop_rate=0.05, duplicate_rate=0.05, skew_rate=0.2, malformed_lines=0
    )
    sa = prepare(generate(cfg).table)
    delta, _ = clock_skew._shifts_by_level(sa)
    assert delta.any(), "the skewed servers should need shifts"
    top = top_of(sa.event_parent, sa.event_levels)
    targets = np.flatnonzero((sa.subscriber >= 0) & (top >= 0))
    assert _compare(sa, targets, sa.start + delta, sa.end + delta) > len(targets)


def _random_forest(rng: np.random.Generator, n: int, n_hops: int) -> SimpleNamespace:
    """Traces of 1–12 spans: parents mostly earlier spans of the trace, some later (cycles), some
    orphaned; links as the event parent of parentless spans; kinds, hosts and times at random."""
    sizes = rng.integers(1, 13, n)
    sizes = sizes[np.cumsum(sizes) <= n]
    lo = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = int(sizes.sum())
    trace = np.repeat(np.arange(len(sizes)), sizes)
    base = lo[trace]
    size = sizes[trace]
    pos = np.arange(m) - base
    parent = np.where(pos > 0, base + rng.integers(0, np.maximum(pos, 1)), -1)
    later = rng.random(m) < 0.03  # may close a cycle
    parent = np.where(later, base + rng.integers(0, size), parent)
    parent = np.where(parent == np.arange(m), -1, parent)
    orphan = (rng.random(m) < 0.05) & (pos > 0)
    parent[orphan] = -1
    link = np.where(orphan & (rng.random(m) < 0.7), base + rng.integers(0, np.maximum(pos, 1)), -1)
    event_parent = np.where(parent >= 0, parent, link)
    start = rng.integers(0, 1_000, m) * 1_000
    end = start + rng.integers(0, 800, m) * 1_000
    return SimpleNamespace(
        n=m,
        parent=parent.astype(np.int64),
        event_parent=event_parent.astype(np.int64),
        event_levels=levels(event_parent, np.ones(m, dtype=bool)),
        start=start.astype(np.int64),
        end=end.astype(np.int64),
        kind=rng.choice(np.array([1, 2, 3, PRODUCER, CONSUMER], np.int8), m),
        host=rng.integers(0, 3, m).astype(np.int32),
        hop=rng.integers(0, n_hops, m).astype(np.int32),
        hop_names=np.array([f"h{k}" for k in range(n_hops)], dtype=object),
    )


@native
@pytest.mark.parametrize("seed", range(6))
def test_random_forests_with_cycles_orphans_and_links(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sa = _random_forest(rng, 3_000, n_hops=5)
    top = top_of(sa.event_parent, sa.event_levels)
    assert (top < 0).any() and (sa.parent != sa.event_parent).any()  # cycles and links occur
    targets = np.flatnonzero(top >= 0)
    rng.shuffle(targets)
    assert _compare(sa, targets, sa.start, sa.end) > 0


@native
def test_bad_parent_index_is_a_named_error() -> None:
    sa = _random_forest(np.random.default_rng(1), 50, n_hops=2)
    sa.event_parent = sa.event_parent.copy()
    sa.event_parent[3] = 10_000
    with pytest.raises(ValueError, match=r"event_parent\[3\] = 10000"):
        kernels.event_roots(sa)


def _id_columns(table) -> dict:
    from hopscope.analysis.span_file import ID_COLUMNS

    return {name: table.column(name) for name in ID_COLUMNS}


INDEX_FIELDS = (
    "keep",
    "trace",
    "span_key",
    "parent",
    "has_parent_id",
    "link_parent",
    "trace_lo",
    "trace_hi",
    "duplicates",
)


def _assert_same_index(got, ref, fields: tuple[str, ...] = INDEX_FIELDS) -> None:
    for name in fields:
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert got.trace_names.equals(ref.trace_names)


def _parquet(tmp_path, cfg_seed: int, groups: int = 5):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hopscope.core.schema import SPAN_PARQUET_OPTIONS

    cfg = SynthConfig.load(None)
    cfg.events, cfg.seed = 300, cfg_seed
    cfg.breakage = Breakage(orphan_rate=0.05, duplicate_rate=0.1, malformed_lines=0)
    table = generate(cfg).table
    # traces (and duplicate span ids) spread over every row group
    table = table.take(pa.array(np.random.default_rng(cfg_seed).permutation(table.num_rows)))
    path = tmp_path / "spans.parquet"
    pq.write_table(table, path, row_group_size=table.num_rows // groups, **SPAN_PARQUET_OPTIONS)
    return table, path


@native
@pytest.mark.parametrize("chunks", [1, 7])
def test_id_index_equals_numpy(chunks: int) -> None:
    import pyarrow as pa

    from hopscope.analysis.id_index import _native_index, _numpy_index

    cfg = SynthConfig.load(None)
    cfg.events, cfg.seed = 400, 9
    cfg.breakage = Breakage(orphan_rate=0.05, missing_hop_rate=0.05, duplicate_rate=0.1, malformed_lines=0)
    table = generate(cfg).table
    rng = np.random.default_rng(chunks)
    table = table.take(pa.array(rng.permutation(table.num_rows)))  # traces interleaved
    # rows split over several chunks (Parquet row groups)
    table = pa.Table.from_batches(table.to_batches(max_chunksize=max(1, table.num_rows // chunks)))
    ids = _id_columns(table)
    native = _native_index(ids)
    assert native is not None
    ref = _numpy_index(ids)
    assert ref.duplicates.sum() > 0 and (ref.has_parent_id & (ref.parent < 0)).any()
    assert (ref.link_parent >= 0).any()
    _assert_same_index(native, ref)

    # an empty parent id is no parent, as a null one is (numpy takes its string path for those)
    parents = table.column("parent_span_id").combine_chunks()
    empty = parents.is_null().to_numpy(zero_copy_only=False) & (rng.random(len(parents)) < 0.5)
    assert empty.any()
    with_empty = {**ids, "parent_span_id": pa.compute.if_else(pa.array(empty), "", parents)}
    again = _native_index(with_empty)
    assert again is not None
    np.testing.assert_array_equal(again.parent, native.parent)
    np.testing.assert_array_equal(again.has_parent_id, native.has_parent_id)


@native
def test_id_index_leaves_other_spellings_to_numpy() -> None:
    import pyarrow as pa

    from hopscope.analysis.id_index import _native_index

    table = generate(SynthConfig.load(None)).table
    upper = pa.compute.utf8_upper(table.column("span_id"))
    ids = _id_columns(table.set_column(table.schema.get_field_index("span_id"), "span_id", upper))
    assert _native_index(ids) is None


@native
def test_id_index_from_dictionary_trace_ids_as_parquet_stores_them(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hopscope.analysis.id_index import _native_index, _numpy_index
    from hopscope.analysis.span_file import ParquetColumns

    _table, path = _parquet(tmp_path, 3)
    cols = ParquetColumns(str(path))
    ids = _id_columns(cols)
    assert pa.types.is_dictionary(ids["trace_id"].type) and ids["trace_id"].num_chunks > 1
    native = _native_index(ids)
    assert native is not None
    ref = _numpy_index(_id_columns(pq.read_table(path)))  # plain strings, numpy
    _assert_same_index(
        native, ref, ("keep", "trace", "span_key", "parent", "has_parent_id", "link_parent", "duplicates")
    )


@native
def test_id_index_streamed_by_row_group_equals_numpy(tmp_path) -> None:
    import pyarrow.parquet as pq

    from hopscope.analysis.id_index import _numpy_index, _streamed_native_index
    from hopscope.analysis.span_file import ParquetColumns

    table, path = _parquet(tmp_path, 4)
    assert pq.ParquetFile(path).metadata.num_row_groups > 3
    streamed = _streamed_native_index(ParquetColumns(str(path)))
    assert streamed is not None
    ref = _numpy_index(_id_columns(table))
    assert ref.duplicates.sum() > 0 and (ref.link_parent >= 0).any()
    _assert_same_index(streamed, ref, tuple(f for f in INDEX_FIELDS if f != "trace_hi"))


@native
def test_a_row_group_the_kernel_declines_sends_prepare_to_numpy(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hopscope.analysis.id_index import _streamed_native_index
    from hopscope.analysis.span_file import ParquetColumns
    from hopscope.analysis.spans import prepare
    from hopscope.core.schema import SPAN_PARQUET_OPTIONS

    table, path = _parquet(tmp_path, 5)
    # upper-case span ids in the last rows only: the stream declines after several groups
    n = table.num_rows
    spans = table.column("span_id").combine_chunks()
    late = pa.array(np.arange(n) >= n - n // 6)
    table = table.set_column(
        table.schema.get_field_index("span_id"),
        "span_id",
        pa.compute.if_else(late, pa.compute.utf8_upper(spans), spans),
    )
    pq.write_table(table, path, row_group_size=n // 5, **SPAN_PARQUET_OPTIONS)
    assert _streamed_native_index(ParquetColumns(str(path))) is None
    got = prepare(ParquetColumns(str(path)))
    ref = prepare(table)
    assert got.n == ref.n > 0
    for name in ("trace", "parent", "link_parent", "start", "end", "hop"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
