"""Analysis throughput: spans → critical paths → hop statistics, from Parquet. Prints figures.

    .venv/bin/python benchmarks/analysis_bench.py --spans 10000000
    .venv/bin/python benchmarks/analysis_bench.py --spans 1000000 --baseline-spans 100000

Generates an Arrow span table directly (vectorised; events × hops chains with
PRODUCER→CONSUMER links, waits and one subscriber per event), writes Parquet,
then runs the full analysis in a child process so its wall time and peak RSS
are its own. Also times a straightforward pandas groupby-apply per trace on a
slice of the same data and, if `hopscope.collector.ingest` exists, ingest of
OTLP JSON lines written by `hopscope synth`. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def _dict_col(indices: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(values)).cast(
        pa.string()
    )


def generate(n_spans: int, hops: int, seed: int, first_event: int = 0) -> pa.Table:
    """events × hops spans: root CLIENT, then alternating PRODUCER / CONSUMER (child + link) spans.
    `first_event` numbers the events from there (a large run generated in chunks)."""
    from hopscope.core.schema import LINK_TYPE, SPAN_SCHEMA
    from hopscope.synth import hex_ids

    rng = np.random.default_rng(seed)
    events = max(1, n_spans // hops)
    n = events * hops
    ev = np.repeat(np.arange(events), hops)
    j = np.tile(np.arange(hops), events)
    dur = np.rint(rng.lognormal(np.log(0.5e6), 0.6, n)).astype(np.int64) + 1
    wait = np.where((j % 2 == 0) & (j > 0), np.rint(rng.lognormal(np.log(1e6), 1.0, n)).astype(np.int64), 0)
    wait[j == 1] = np.rint(rng.exponential(50_000, events)).astype(np.int64)  # send lag inside the root
    step = wait + np.where(j == 0, 0, dur)
    step[j == 0] = 0
    cum = np.cumsum(step.reshape(events, hops), axis=1).reshape(-1)
    intended = 1_790_000_000_000_000_000 + np.repeat(
        np.cumsum(rng.exponential(1e6, events)).astype(np.int64), hops
    )
    end = intended + cum
    start = end - np.where(j == 0, 0, dur)
    start[j == 0] = intended[j == 0]
    end[j == 0] = end[j == 1]  # the root ends with its first child (the ack)

    sid = rng.integers(1, 2**63, n, dtype=np.int64)
    tid = hex_ids(
        [rng.integers(0, 2**63, events, dtype=np.int64), rng.integers(0, 2**63, events, dtype=np.int64)]
    )
    trace_ids = tid.take(pa.array(ev))
    span_ids = hex_ids([sid])
    parent_ids = pc.if_else(pa.array(j > 0), hex_ids([np.roll(sid, 1)]), pa.scalar(None, pa.string()))
    is_consumer = (j % 2 == 0) & (j > 0)
    offsets = np.concatenate([[0], np.cumsum(is_consumer)]).astype(np.int32)
    link_rows = np.flatnonzero(is_consumer)
    link_struct = pa.StructArray.from_arrays(
        [trace_ids.take(pa.array(link_rows)), hex_ids([sid[link_rows - 1]])], fields=list(LINK_TYPE)
    )
    links = pa.ListArray.from_arrays(pa.array(offsets), link_struct, type=pa.list_(LINK_TYPE))
    kind_idx = np.where(j == 0, 0, np.where(j % 2 == 1, 1, 2))
    hop_names = ["loadgen.send"] + [f"hop{k}" for k in range(1, hops)]
    last = j == hops - 1
    attr_keys = _dict_col(last.astype(np.int32), ["messaging.system", "hopscope.subscriber"])
    attr_vals = _dict_col(last.astype(np.int32), ["kafka", "sub-0"])
    attributes = pa.MapArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), attr_keys, attr_vals)
    resource_map = pa.MapArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32)),
        _dict_col(np.zeros(n), ["hopscope.run_id"]),
        _dict_col(np.zeros(n), ["bench"]),
    )
    stack_idx = (ev % 2).astype(np.int32)
    return pa.table(
        {
            "trace_id": trace_ids,
            "span_id": span_ids,
            "parent_span_id": parent_ids,
            "links": links,
            "name": _dict_col(j, hop_names),
            "kind": _dict_col(kind_idx, ["CLIENT", "PRODUCER", "CONSUMER"]),
            "start_ns": pa.array(start),
            "end_ns": pa.array(end),
            "status": _dict_col(np.zeros(n), ["UNSET"]),
            "service": _dict_col(np.minimum(j, 5), [f"svc{k}" for k in range(6)]),
            "stack": _dict_col(stack_idx, ["kafka", "harper"]),
            "workload": _dict_col(np.zeros(n), ["write_notify"]),
            "event_id": hex_ids([(ev + first_event).astype(np.int64)]).take(pa.array(np.arange(n))),
            "hop": _dict_col(j, hop_names),
            "derived": pa.array(np.zeros(n, bool)),
            "attributes": attributes,
            "resource": resource_map,
            "source": _dict_col(np.zeros(n), ["bench"]),
        },
        schema=SPAN_SCHEMA,
    )


def analyse(run_dir: Path) -> dict:
    """The timed part, run in a child process: load Parquet, critical paths, statistics, outputs."""
    import gc

    from hopscope.analysis import load

    gc.freeze()
    c0 = time.process_time()
    t0 = time.perf_counter()
    run = load(run_dir)
    t_read = time.perf_counter()
    stats = run.hop_stats()
    t_stats = time.perf_counter()
    c_stats = time.process_time()
    e2e = run.e2e()
    growth = run.tail_growth()
    quality = run.quality()
    out = run_dir / "out"
    run.write_outputs(out)
    t_all = time.perf_counter()
    c_all = time.process_time()
    return {
        "paths_and_stats_cpu_s": c_stats - c0,
        "full_cpu_s": c_all - c0,
        "read_s": t_read - t0,
        "paths_and_stats_s": t_stats - t0,
        "full_s": t_all - t0,
        "deliveries": len(e2e),
        "hops": len(stats),
        "growth_rows": len(growth),
        "traces": sum(p["traces"] for p in quality["pairs"].values()),
        "peak_rss_mib": _peak_rss_mib(),
    }


def _peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries that over exec from the
    parent, so a child started after generating 10 M spans would report the generator's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pandas_baseline(path: Path, n_spans: int) -> tuple[float, int]:
    """A straightforward per-trace groupby-apply: hop durations and waits from each trace's spans."""
    import pandas as pd

    df = (
        pq.read_table(path, columns=["trace_id", "span_id", "parent_span_id", "start_ns", "end_ns", "hop"])
        .slice(0, n_spans)
        .to_pandas()
    )

    def per_trace(g: pd.DataFrame) -> pd.DataFrame:
        g = g.sort_values("start_ns")
        by_id = dict(zip(g["span_id"], g["end_ns"], strict=True))
        rows = []
        root_start = g["start_ns"].iloc[0]
        for sid, pid, s, e, hop in zip(
            g["span_id"], g["parent_span_id"], g["start_ns"], g["end_ns"], g["hop"], strict=True
        ):
            del sid
            rows.append((hop, e - s))
            if pid in by_id and s > by_id[pid]:
                rows.append(("wait:" + hop, s - by_id[pid]))
        out = pd.DataFrame(rows, columns=["hop", "ns"])
        out["e2e"] = g["end_ns"].max() - root_start
        return out

    t0 = time.perf_counter()
    res = df.groupby("trace_id", sort=False).apply(per_trace, include_groups=False)
    res.groupby("hop")["ns"].describe(percentiles=[0.5, 0.9, 0.99, 0.999])
    return time.perf_counter() - t0, len(df)


def time_ingest(tmp: Path, events: int) -> dict | None:
    try:
        from hopscope.collector.ingest import ingest
    except ImportError:
        return None
    from hopscope.synth import SynthConfig, generate, write_run

    cfg = SynthConfig.load(None)
    cfg.events = events
    cfg.breakage.malformed_lines = 0
    run = generate(cfg)
    rd = tmp / "ingest"
    write_run(run, rd, cfg, parquet=False)
    c0, t0 = time.process_time(), time.perf_counter()
    ingest([rd / "spans"], rd)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = pq.read_metadata(rd / "spans.parquet").num_rows
    return {"spans": rows, "seconds": dt, "spans_per_s": rows / dt, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=10_000_000)
    ap.add_argument("--hops", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--baseline-spans", type=int, default=100_000, help="spans for the pandas groupby-apply baseline"
    )
    ap.add_argument(
        "--ingest-events", type=int, default=2000, help="events per pair for the ingest timing (0: skip)"
    )
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="reuse DIR/run/spans.parquet from an earlier run")
    ap.add_argument("--analyse", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.analyse:
        print(json.dumps(analyse(args.analyse)))
        return

    tmp_ctx = tempfile.TemporaryDirectory(prefix="hopscope-bench-") if args.dir is None else None
    work = Path(tmp_ctx.name) if tmp_ctx else args.dir
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "run"
    run_dir.mkdir(exist_ok=True)
    if args.reuse and (run_dir / "spans.parquet").exists():
        n = pq.read_metadata(run_dir / "spans.parquet").num_rows
        print(f"reusing {run_dir / 'spans.parquet'} ({n:,} spans)")
    else:
        t0 = time.perf_counter()
        table = generate(args.spans, args.hops, args.seed)
        t_gen = time.perf_counter() - t0
        from hopscope.core.schema import SPAN_PARQUET_OPTIONS

        # written as ingest writes it, so the read costs are the ones a real run has
        pq.write_table(table, run_dir / "spans.parquet", **SPAN_PARQUET_OPTIONS)
        n = table.num_rows
        del table
        t_write = time.perf_counter() - t0 - t_gen
        print(
            f"generated {n:,} spans ({n // args.hops:,} events × {args.hops} hops) in {t_gen:.1f} s, Parquet write {t_write:.1f} s"
        )

    proc = subprocess.run(
        [sys.executable, __file__, "--analyse", str(run_dir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(proc.returncode)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    rate = n / r["paths_and_stats_s"]
    print(
        f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times inflate under load;"
    )
    print("  CPU seconds of the analysis process are printed next to them)")
    print(f"open Parquet (columns are read lazily inside the next step) {r['read_s']:.2f} s")
    print(
        f"critical paths + hop statistics ... {r['paths_and_stats_s']:.2f} s  = {rate / 1e6:.2f} M spans/s wall "
        f"(goal ≥ 1 M/s on this machine's {os.cpu_count()} cores); "
        f"{r['paths_and_stats_cpu_s']:.2f} CPU s = {n / r['paths_and_stats_cpu_s'] / 1e6:.2f} M spans/CPU-s"
    )
    print(
        f"full analysis (+ e2e, tail growth, quality, outputs) {r['full_s']:.2f} s wall, "
        f"{r['full_cpu_s']:.2f} CPU s (goal < 60 s at 10 M spans)"
    )
    print(f"peak RSS of the analysis process .. {r['peak_rss_mib']:.0f} MiB (goal < 4096 MiB)")
    print(f"deliveries {r['deliveries']:,}, traces {r['traces']:,}, hop rows {r['hops']}")

    if args.baseline_spans:
        c0 = time.process_time()
        t_pd, n_pd = pandas_baseline(run_dir / "spans.parquet", args.baseline_spans)
        cpu_pd = time.process_time() - c0
        pd_rate = n_pd / t_pd
        print(
            f"pandas groupby-apply CPU: {cpu_pd:.2f} s; CPU-time ratio = "
            f"{(n / r['paths_and_stats_cpu_s']) / (n_pd / cpu_pd):.0f}×"
        )
        print(
            f"pandas groupby-apply per trace on {n_pd:,} spans: {t_pd:.2f} s = {pd_rate / 1e3:.1f} k spans/s"
        )
        print(f"ratio vectorised / groupby-apply = {rate / pd_rate:.0f}× (goal ≥ 20×)")
    if args.ingest_events:
        ing = time_ingest(work, args.ingest_events)
        if ing is None:
            print("ingest: hopscope.collector.ingest not available, skipped")
        else:
            print(
                f"ingest of OTLP JSON lines: {ing['spans']:,} spans in {ing['seconds']:.2f} s = "
                f"{ing['spans_per_s'] / 1e3:.0f} k spans/s wall; {ing['cpu_s']:.2f} CPU s = "
                f"{ing['spans'] / ing['cpu_s'] / 1e3:.0f} k spans/CPU-s (all threads)"
            )
    if tmp_ctx:
        tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
