"""The analysis on Dask against one process, on one synthetic run. Prints figures.

    nice -n 19 .venv/bin/python benchmarks/distributed_bench.py --spans 50000000
    .venv/bin/python benchmarks/distributed_bench.py --spans 2000000 --dir /tmp/db   # a quick look

Generates the span table of `analysis_bench.py` (events × hops chains with PRODUCER→CONSUMER
links, waits, one subscriber per event) in chunks into one spans.parquet written as ingest
writes it, then analyses it
  (a) in one process (`load()` → hop_stats, e2e_summary, tail_growth, quality), and
  (b) on a local Dask cluster of 2 worker processes, each limited to a memory budget below (a)'s
      peak (default: 40 % of it), through `analyze_distributed`;
each in a child process of its own, so wall time and peak memory are theirs. Prints wall time,
spans/s, peak RSS of (a) and of each worker and the client of (b), and the largest relative
difference between (a) and (b) of any hop quantile (and of the tail growth and e2e quantiles,
and of the exactly merged figures). `--skip-single` runs (b) alone (a size (a) cannot hold here:
give --worker-memory). Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_bench import _peak_rss_mib, generate

#: spans generated and written at a time (the generator holds one chunk)
CHUNK_SPANS = 2_500_000
QUANTILE_COLUMNS = ["p50_ms", "p90_ms", "p99_ms", "p999_ms"]
EXACT_COLUMNS = [
    "count",
    "mean_ms",
    "std_ms",
    "max_ms",
    "var_share",
    "tail_share_p99",
    "tail_share_p999",
    "crit_share",
]


def write_spans(path: Path, n_spans: int, hops: int, seed: int) -> int:
    from hopscope.core.schema import SPAN_PARQUET_OPTIONS, SPAN_SCHEMA

    written = 0
    with pq.ParquetWriter(path, SPAN_SCHEMA, **SPAN_PARQUET_OPTIONS) as writer:
        chunk = 0
        while written < n_spans:
            size = min(CHUNK_SPANS, n_spans - written)
            table = generate(size, hops, seed * 1000 + chunk, first_event=written // hops)
            writer.write_table(table, row_group_size=500_000)
            written += table.num_rows
            chunk += 1
            print(f"  generated {written:,} / {n_spans:,} spans", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return written


def single(run_dir: Path, out: Path) -> dict:
    from hopscope.analysis import load

    t0 = time.perf_counter()
    run = load(run_dir)
    tables = {
        "hop_stats": run.hop_stats(),
        "e2e_summary": run.e2e_summary(),
        "tail_growth": run.tail_growth(),
    }
    quality = run.quality()
    wall = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(out / f"{name}.parquet", index=False)
    (out / "quality.json").write_text(json.dumps(quality))
    return {"wall_s": wall, "peak_rss_mib": _peak_rss_mib()}


def _worker_peak_mib() -> float:
    return _peak_rss_mib()


def distributed(run_dir: Path, out: Path, workers: int, memory: str, partition_spans: int) -> dict:
    from rich.console import Console

    from hopscope.analysis.distributed import analyze_distributed, connect, write_distributed

    with connect(workers=workers, memory_limit=memory) as client:
        t0 = time.perf_counter()
        a = analyze_distributed(
            str(run_dir), client=client, scratch=str(out), spans_per_partition=partition_spans,
            console=Console(stderr=True),
        )  # fmt: skip
        wall = time.perf_counter() - t0
        peaks = client.run(_worker_peak_mib)
    write_distributed(a, out)
    return {
        "wall_s": wall,
        "worker_peak_rss_mib": sorted(peaks.values()),
        "client_peak_rss_mib": _peak_rss_mib(),
        "partitions": a.engine.partitions,
        "approximate_tails": a.results.approximate_tails,
    }


def _child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[:2]} failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _max_rel(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], columns: list[str]) -> tuple[float, str]:
    m = a.merge(b, on=keys, suffixes=("", "_d"))
    worst, where = 0.0, ""
    for c in columns:
        x, y = m[c].to_numpy(float), m[c + "_d"].to_numpy(float)
        ok = ~np.isnan(x) & ~np.isnan(y) & (np.abs(x) > 1e-12)
        if not ok.any():
            continue
        rel = np.abs(x[ok] - y[ok]) / np.abs(x[ok])
        i = int(np.argmax(rel))
        if rel[i] > worst:
            row = m[ok].iloc[i]
            worst, where = float(rel[i]), f"{c} of {'/'.join(str(row[k]) for k in keys)}"
    return worst, where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=50_000_000)
    ap.add_argument("--hops", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--worker-memory", default=None, help="per-worker limit, e.g. 3GiB (default: 40 %% of (a)'s peak)"
    )
    ap.add_argument(
        "--partition-spans", type=int, default=None, help="spans per partition (default: the engine's)"
    )
    ap.add_argument("--skip-single", action="store_true", help="run (b) only (needs --worker-memory)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="reuse DIR/run/spans.parquet from an earlier run")
    ap.add_argument("--single", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--distributed", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        print(json.dumps(single(*args.single)))
        return
    if args.distributed:
        rd, out, workers, memory, spans = args.distributed
        print(json.dumps(distributed(Path(rd), Path(out), int(workers), memory, int(spans))))
        return

    from hopscope.analysis.distributed import SPANS_PER_PARTITION

    tmp_ctx = tempfile.TemporaryDirectory(prefix="hopscope-dbench-") if args.dir is None else None
    work = Path(tmp_ctx.name) if tmp_ctx else args.dir
    run_dir = work / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    spans_file = run_dir / "spans.parquet"
    if args.reuse and spans_file.exists():
        n = pq.read_metadata(spans_file).num_rows
        print(f"reusing {spans_file} ({n:,} spans)")
    else:
        t0 = time.perf_counter()
        n = write_spans(spans_file, args.spans, args.hops, args.seed)
        print(
            f"generated and wrote {n:,} spans ({n // args.hops:,} events × {args.hops} hops) in {time.perf_counter() - t0:.0f} s"
        )
    print(f"spans.parquet: {spans_file.stat().st_size / 2**30:.2f} GiB")

    a = None
    if not args.skip_single:
        a = _child(["--single", str(run_dir), str(work / "single")])
        print(
            f"(a) one process:      {a['wall_s']:7.1f} s wall, {n / a['wall_s'] / 1e6:.2f} M spans/s, "
            f"peak RSS {a['peak_rss_mib'] / 1024:.2f} GiB"
        )
    if args.worker_memory is None and a is None:
        raise SystemExit("--skip-single needs --worker-memory")
    memory = args.worker_memory or f"{int(a['peak_rss_mib'] * 0.4)}MiB"  # type: ignore[index]
    spans = args.partition_spans or SPANS_PER_PARTITION
    b = _child(["--distributed", str(run_dir), str(work / "dist"), str(args.workers), memory, str(spans)])
    peaks = ", ".join(f"{p / 1024:.2f}" for p in b["worker_peak_rss_mib"])
    print(
        f"(b) {args.workers} Dask workers: {b['wall_s']:7.1f} s wall, {n / b['wall_s'] / 1e6:.2f} M spans/s, "
        f"limit {memory} per worker, peak RSS per worker [{peaks}] GiB, client {b['client_peak_rss_mib'] / 1024:.2f} GiB, "
        f"{b['partitions']} partitions"
    )
    if a is None:
        return
    print(f"    worker peak / one-process peak: {max(b['worker_peak_rss_mib']) / a['peak_rss_mib']:.2f}; "
          f"wall (b) / (a): {b['wall_s'] / a['wall_s']:.2f}")  # fmt: skip
    one, dist = work / "single", work / "dist"
    keys = ["stack", "workload", "hop"]
    hs1, hs2 = pd.read_parquet(one / "hop_stats.parquet"), pd.read_parquet(dist / "hop_stats.parquet")
    q, where = _max_rel(hs1, hs2, keys, QUANTILE_COLUMNS)
    print(f"largest relative difference of a hop quantile (a) vs (b): {q:.4%} ({where}); sketch promise 1 %")
    g, gw = _max_rel(pd.read_parquet(one / "tail_growth.parquet"), pd.read_parquet(dist / "tail_growth.parquet"),
                     keys, ["p50_ms", "p99_ms", "p999_ms"])  # fmt: skip
    e, ew = _max_rel(pd.read_parquet(one / "e2e_summary.parquet"), pd.read_parquet(dist / "e2e_summary.parquet"),
                     ["stack", "workload"], QUANTILE_COLUMNS)  # fmt: skip
    print(f"  tail growth quantiles: {g:.4%} ({gw}); e2e quantiles: {e:.4%} ({ew})")
    x, xw = _max_rel(hs1, hs2, keys, EXACT_COLUMNS)
    print(f"  counts, means, std, max, shares (merged exactly): {x:.2e} ({xw}); "
          f"tail thresholds from the sketch: {b['approximate_tails'] or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
