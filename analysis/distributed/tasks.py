"""What runs on a worker for one partition (a bucket of whole traces): pass 1 runs the
single-process analysis (`Run`) on it and returns its summary, keeping its matrices in the
scratch folder for pass 2, which returns the tail sums. Nothing of a partition but these
summaries travels back."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import json
import os
from dataclasses import dataclass

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hopscope.core.rundir import RunDirError

from ..mapping import Mapping
from ..run import Run
from ..run_files import check_ledger_schema
from .shuffle import bucket_dir, read_bucket
from .summaries import Pair, PartitionSummary, summarise
from .tails import PairPlan, PairTail, pair_tail


@dataclass(frozen=True)
class PartitionContext:
    """What every partition task needs besides its bucket number (small: sent with each task)."""

    scratch: str
    storage_options: dict
    manifest: dict
    ledger_url: str | None
    label: str
    mapping: Mapping | None
    correct_skew: bool = True


def _give_memory_back() -> None:
    """Return freed heap and Arrow pool pages to the system after a partition: Dask watches a
    worker's RSS, and a worker that kept its last partition's peak would look full to it."""
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _ledger_for(ctx: PartitionContext, table: pa.Table) -> pd.DataFrame | None:
    """The ledger rows of the partition's events (the ledger is one row per event, small next to
    the spans; each partition keeps only its own)."""
    if ctx.ledger_url is None:
        return None
    events = pc.unique(table.column("event_id").combine_chunks().cast(pa.string())).drop_null()
    try:
        with fsspec.open(ctx.ledger_url, "rb", **ctx.storage_options) as f:
            ledger = pq.read_table(f)
    except (OSError, pa.ArrowException) as exc:
        raise RunDirError(f"{ctx.ledger_url}: cannot read as Parquet ({exc})") from exc
    check_ledger_schema(ledger, ctx.ledger_url)
    mine = ledger.filter(pc.is_in(ledger.column("event_id").cast(pa.string()), value_set=events))
    if mine.num_rows == 0 and ledger.num_rows:
        # none of the partition's events is in the ledger: one row of another event keeps the
        # ledger non-empty, so its deliveries count as without receipt, as in one process
        mine = ledger.slice(0, 1)
    return mine.to_pandas()


def _matrix_url(ctx: PartitionContext, bucket: int) -> str:
    return f"{bucket_dir(ctx.scratch, bucket)}.matrices.npz"


def analyse_partition(bucket: int, ctx: PartitionContext) -> PartitionSummary:
    """Pass 1: the bucket's spans through the single-process analysis, summarised."""
    # the allocator tuning keeps freed memory for the next large array of one analysis; on a
    # worker that runs one partition after another it would hold every partition's peak
    os.environ.setdefault("HOPSCOPE_MALLOC_TUNING", "0")
    try:
        table = read_bucket(ctx.scratch, bucket, ctx.storage_options)
        if table.num_rows == 0:
            return PartitionSummary()
        run = Run.from_table(
            table,
            manifest=ctx.manifest,
            ledger=_ledger_for(ctx, table),
            correct_skew=ctx.correct_skew,
            label=ctx.label,
            mapping=ctx.mapping,
        )
        del table
        summary, matrices = summarise(run)
        del run
        _write_matrices(_matrix_url(ctx, bucket), matrices, ctx.storage_options)
        return summary
    finally:
        _give_memory_back()


def _write_matrices(url: str, matrices: dict[Pair, tuple[list[str], np.ndarray]], options: dict) -> None:
    arrays = {f"m{i}": values for i, (_labels, values) in enumerate(matrices.values())}
    index = [[list(pair), labels] for pair, (labels, _values) in matrices.items()]
    buf = io.BytesIO()
    np.savez(buf, index=np.array(json.dumps(index)), **arrays)
    with fsspec.open(url, "wb", **options) as f:
        f.write(buf.getvalue())


def _read_matrices(url: str, options: dict) -> dict[Pair, tuple[list[str], np.ndarray]]:
    fs, path = fsspec.core.url_to_fs(url, **options)
    if not fs.exists(path):
        return {}
    with fs.open(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()), allow_pickle=False)
        index = json.loads(str(data["index"]))
        return {tuple(pair): (labels, data[f"m{i}"]) for i, (pair, labels) in enumerate(index)}  # type: ignore[misc]


def tail_partition(bucket: int, ctx: PartitionContext, plans: dict[Pair, PairPlan]) -> dict[Pair, PairTail]:
    """Pass 2: tail growth sketches and tail sums of the bucket's deliveries in the merged order."""
    out = {}
    for pair, (labels, values) in _read_matrices(_matrix_url(ctx, bucket), ctx.storage_options).items():
        if pair in plans:
            out[pair] = pair_tail(labels, values, plans[pair])
    return out
