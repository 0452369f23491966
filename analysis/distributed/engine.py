"""`analyze_distributed(SOURCE, client=…)`: the analysis on a Dask cluster.

1. shuffle: each piece of the input (whole row groups) is written into per-trace buckets
   under a scratch folder (`shuffle.py`);
2. pass 1: each bucket runs the single-process analysis and returns mergeable summaries
   (`tasks.analyse_partition`, `summaries.py`); the client merges them as they arrive;
3. the merged pass 1 fixes each pair's hop order and the e2e bands around the tail quantiles;
4. pass 2: tail growth and tail sums per bucket (`tails.py`), merged; exact tail shares;
5. the tables, the graphs and quality.json, in the single-process path's columns
   (`results.py`).
Only summaries reach the client; spans move between the workers through the scratch folder.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from distributed import Client, as_completed
from distributed.scheduler import KilledWorker
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hopscope.core.rundir import INGEST_REPORT, LEDGER, MANIFEST

from .. import ledger as ledger_figures
from ..mapping import Mapping
from . import sketch
from .cluster import ClusterError
from .results import Results, quality, tables
from .shuffle import joined_traces, link_edges, shuffle_piece
from .sources import SpanSource, resolve
from .summaries import Pair, PartitionSummary
from .tails import BAND_MARGINS, TAILS, PairPlan, PairTail, band_for, tail_shares
from .tasks import PartitionContext, analyse_partition, tail_partition

#: spans per partition by default: a partition's analysis peaks near 0.35 GiB per million
#: spans (Arrow table + arrays), so 2 M fit a worker of 1.5 GiB with room to spare
SPANS_PER_PARTITION = 2_000_000


@dataclass
class Engine:
    """What produced the figures (the report and quality.json say it)."""

    engine: str
    workers: int
    partitions: int
    spans: int
    accuracy: str = sketch.ACCURACY_TEXT

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "workers": self.workers,
            "partitions": self.partitions,
            "spans": self.spans,
            "quantiles": self.accuracy,
            "exact": "counts, means, std, max, variance / tail / critical-path shares",
        }


@dataclass
class DistributedAnalysis:
    results: Results
    engine: Engine
    source: SpanSource


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _run_all(
    client: Client,
    progress: Progress,
    title: str,
    fn: Callable[..., Any],
    items: list[Any],
    *args: Any,
    key: str,
) -> Iterator[tuple[int, Any]]:
    """(index, result) of fn(item, *args) for every item, as they finish, with a bar."""
    task = progress.add_task(title, total=len(items))
    token = uuid.uuid4().hex[:8]
    futures = [
        client.submit(fn, item, *args, key=f"hopscope-{key}-{token}-{i}", pure=False)
        for i, item in enumerate(items)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    for future in as_completed(futures):
        try:
            result = future.result()
        except KilledWorker as exc:
            for f in futures:
                f.cancel()
            raise ClusterError(
                f"{title}: workers kept dying on one task ({exc.args[0] if exc.args else exc}); "
                "most often a partition needs more memory than a worker may use: lower "
                "--partition-spans or raise --worker-memory"
            ) from exc
        yield index[future.key], result
        progress.advance(task)
        future.release()


def _scratch_fs_path(scratch: str, options: dict) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(scratch, **options)


@contextlib.contextmanager
def _scratch_folder(base: str, options: dict) -> Iterator[str]:
    """A fresh folder under `base` for the shuffle, removed afterwards whatever happens."""
    url = f"{base.rstrip('/')}/hopscope-shuffle-{uuid.uuid4().hex[:12]}"
    fs, path = _scratch_fs_path(url, options)
    fs.makedirs(path, exist_ok=True)
    try:
        yield url
    finally:
        with contextlib.suppress(OSError, FileNotFoundError):
            fs.rm(path, recursive=True)


def _read_ledger(src: SpanSource) -> tuple[str | None, pd.DataFrame | None]:
    url = src.run_file(LEDGER)
    if url is None:
        return None, None
    with src.open(url) as f:
        cols = pq.ParquetFile(f).schema_arrow.names
    with src.open(url) as f:
        want = [c for c in ("stack", "workload", "event_id", "warmup") if c in cols]
        return url, pq.read_table(f, columns=want).to_pandas()


def analyze_distributed(
    source: str,
    *,
    client: Client,
    scratch: str,
    storage_options: dict | None = None,
    label: str | None = None,
    mapping: Mapping | None = None,
    spans_per_partition: int = SPANS_PER_PARTITION,
    correct_skew: bool = True,
    console: Console | None = None,
) -> DistributedAnalysis:
    """Analyse SOURCE (a run directory, or a span Parquet file or glob of them; any fsspec URL)
    on the cluster behind `client`; `scratch` is a folder (URL) every worker can read and write,
    for the shuffle. Returns the merged tables (`results.Results`) and what produced them."""
    console = console or Console(stderr=True)
    options = dict(storage_options or {})
    src = resolve(source, options, piece_rows=max(spans_per_partition // 2, 1))
    manifest = src.read_json(MANIFEST)
    ingest_report = src.read_json(INGEST_REPORT)
    ledger_url, ledger_rows = _read_ledger(src)
    name = (src.run_url or source).rstrip("/").rsplit("/", 1)[-1] or "traces"
    workers = max(len(client.scheduler_info().get("workers", {})), 1)
    n_buckets = max(2 * workers, math.ceil(src.rows / spans_per_partition))
    with _progress(console) as progress, _scratch_folder(scratch, options) as folder:
        ctx = PartitionContext(folder, options, manifest, ledger_url, label or name, mapping, correct_skew)
        joined: dict[str, str] = {}
        foreign = [p for p in src.pieces if p.may_hold_foreign]
        if foreign:
            edges: list[tuple[str, str]] = []
            for _, got in _run_all(
                client, progress, "links across traces", link_edges, foreign, options, key="links"
            ):
                edges.extend(got)
            joined = joined_traces(edges)
        jobs = list(enumerate(src.pieces))
        for _ in _run_all(
            client, progress, f"shuffle by trace → {n_buckets} partitions", _shuffle_job, jobs,
            n_buckets, folder, options, joined or None, key="shuffle",
        ):  # fmt: skip
            pass
        merged = PartitionSummary()
        for _, part in _run_all(
            client, progress, "partitions: critical paths, summaries", analyse_partition,
            list(range(n_buckets)), ctx, key="pass1",
        ):  # fmt: skip
            merged = merged.merge(part)
        shares, tails, approximate = _tail_pass(client, progress, ctx, merged, n_buckets)
    warm = ledger_figures.warmup_events(ledger_rows)
    warm_counts: dict[Pair, int] = {
        (str(s), str(w)): int(n) for (s, w), n in warm.groupby(["stack", "workload"]).size().items()
    } if len(warm) else {}  # fmt: skip
    doc = quality(merged, manifest, ingest_report, warm_counts)
    engine = Engine(f"dask.distributed ({client.scheduler.address})", workers, n_buckets, src.rows)
    doc["engine"] = {**engine.as_dict(), "approximate_tail_thresholds": approximate}
    results = tables(merged, tails, shares, doc)
    results.approximate_tails = approximate
    return DistributedAnalysis(results, engine, src)


def _shuffle_job(job: tuple[int, Any], *args: Any) -> np.ndarray:
    index, piece = job
    return shuffle_piece(piece, index, *args)


def _tail_pass(
    client: Client, progress: Progress, ctx: PartitionContext, merged: PartitionSummary, n_buckets: int
) -> tuple[dict[Pair, dict[str, np.ndarray]], dict[Pair, PairTail], list[str]]:
    """Pass 2 (again with a wider band where the first band missed the tail's order statistics).
    Returns the tail shares, the growth sketches and the tails whose threshold stayed the
    sketch's estimate."""
    shares: dict[Pair, dict[str, np.ndarray]] = {}
    growth: dict[Pair, PairTail] = {}
    approximate: list[str] = []
    pending = {}
    for pair, s in merged.pairs.items():
        if s.co.n:
            pending[pair] = list(TAILS)
        else:
            shares[pair] = {k: np.full(len(s.hops), np.nan) for k in TAILS}
    for attempt, margin in enumerate(BAND_MARGINS):
        plans = {}
        for pair, keys in pending.items():
            s = merged.pairs[pair]
            bands = {k: band_for(s.e2e_sketch, s.co.n, TAILS[k], margin) for k in keys}
            plans[pair] = PairPlan(s.hop_order(), bands)
        if not plans:
            break
        parts: dict[Pair, PairTail] = {}
        title = "tail pass" if attempt == 0 else "tail pass (wider bands)"
        for _, got in _run_all(
            client,
            progress,
            title,
            tail_partition,
            list(range(n_buckets)),
            ctx,
            plans,
            key=f"pass2-{attempt}",
        ):
            for pair, t in got.items():
                parts[pair] = parts[pair].merge(t) if pair in parts else t
        last = attempt == len(BAND_MARGINS) - 1
        still: dict[Pair, list[str]] = {}
        for pair, keys in pending.items():
            s = merged.pairs[pair]
            order = plans[pair].labels
            mean_h = np.array([s.co.mean_h.get(h, 0.0) for h in order])
            if pair in parts and attempt == 0:
                growth[pair] = parts[pair]
            for k in keys:
                part = parts[pair].tails[k] if pair in parts else None
                if part is None:
                    shares.setdefault(pair, {})[k] = np.full(len(order), np.nan)
                    continue
                estimate = sketch.quantile(s.e2e_sketch, TAILS[k]) * 1e6 if last else None
                value, exact = tail_shares(part, s.co.n, TAILS[k], s.co.mean_e, mean_h, estimate)
                if exact or last:
                    shares.setdefault(pair, {})[k] = value
                    if not exact:
                        approximate.append(f"{pair[0]}/{pair[1]} {k}")
                else:
                    still.setdefault(pair, []).append(k)
        pending = still
    return shares, growth, approximate
