"""What tracing costs one workload on one stack: latency overhead and who burns the extra CPU.

Runs `--pairs` pairs of `hopscope bench` runs of the same workload, one traced (driver,
services and load generator export spans to the collector) and one untraced (nothing traced
anywhere). Both arms of a pair use the same seed, so they send the same schedule; the seed
changes from pair to pair. The order within a pair alternates (on/off, off/on, ...) so that
drift of the machine over the run hits both arms alike. `--prime` pairs (default 1) run first and
are discarded: the first pair after a stack start was always the worst (+31 to +54 % at p50,
cold caches, JIT and connections), which is the stack warming up, not tracing. Each arm is wrapped in the study's
`PhaseMonitor` (per-service CPU, this process = the load generator, its children = the
stack's glue processes, host CPU) and followed, still inside the monitor, by a fixed
`--settle` pause: the services' span exporters flush up to 5 s after the last event, and the
collector and the trace store must be charged for that to the traced arm, not to the next one
(whose latencies they would also disturb).

Latency is the ledger e2e of every measured (non-warm-up) delivery: intended send → each
subscriber's first receipt, on the generator's clock, the same measure in both arms. The
overhead at quantile q is q(traced) / q(untraced) − 1 over the pooled deliveries of all pairs.
Its 95 % interval is a paired two-level bootstrap: each draw picks pairs with replacement (the
same picks for both arms), resamples the deliveries within each arm of each picked pair,
pools them per arm and takes the ratio of the pooled quantiles. Picking whole pairs carries the
between-pair drift into the interval once, as a pair effect common to both arms (which is what
the interleaving buys), while resampling deliveries keeps each arm's own sampling noise; a
median of per-pair ratios would ignore that noise and, with five pairs, give an interval with
only a handful of distinct values.

CPU figures are ms per sent event over the whole arm (set-up, clean-start wait, warm-up,
drain and settle included), so each arm's idle and set-up cost is in both and cancels in the
difference; the spread of that difference over pairs says how much of it is noise. Two blind
spots of the monitor: a glue process's CPU after its last sample (its exit flush) is not
counted, and the monitor samples from a thread of this process, the generator's, in both arms
(`--monitor-interval` to see what that costs the latency).

The measuring part holds the host-wide lock `/tmp/hopscope-measure.lock` (waits while another
measurement holds it). Needs the services (`hopscope up`). Run:

    .venv/bin/python benchmarks/overhead_bench.py --stack kafka --workload write_notify \\
        [--pairs 5] [--prime 1] [--rate 40] [--duration 10] [--warmup 3] [--out DIR] [--json PATH]
    .venv/bin/python benchmarks/overhead_bench.py --from runs/<out>/overhead.json  # analyse again
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from hopscope.analysis.ledger import deliveries, measured
from hopscope.analysis.overhead import TARGETS, Overhead, overheads
from hopscope.analysis.run import read_ledger
from hopscope.analysis.verdicts import CONFIDENCE, MIN_TAIL, N_BOOT
from hopscope.core.rundir import DEFAULT_RUNS_DIR, SPANS_DIR
from hopscope.experiment.phase_stats import schedule_lag
from hopscope.experiment.resources import GLUE, LOADGEN, PhaseMonitor
from hopscope.experiment.study import collector_endpoint
from hopscope.pipelines.bench import resolve_bench, run_bench
from hopscope.pipelines.clean_start import NotCleanError
from hopscope.pipelines.collector_files import collector_runs_root, move_spans
from hopscope.pipelines.driver import PreflightError
from hopscope.pipelines.stack import StackError, find_stack
from hopscope.pipelines.workload import Workload, WorkloadError

LOCK_PATH = Path("/tmp/hopscope-measure.lock")
#: exit codes as `hopscope bench` uses them
EXIT_USAGE, EXIT_PREFLIGHT, EXIT_NOT_CLEAN, EXIT_INTERRUPTED = 2, 3, 4, 130


# --- one arm -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """What every arm of one measurement shares."""

    stack: str
    workload_name: str
    pairs_requested: int
    #: discarded pairs run first: the first pair after a stack start was always the worst
    prime: int
    settle_s: float
    #: the PhaseMonitor's sampling interval (the study's is 0.5 s)
    monitor_interval_s: float
    out: str


@dataclass
class Arm:
    pair: int
    tracing: bool
    seed: int
    run_dir: str
    seconds: float
    events: int
    achieved_rate: float
    schedule_lag_p99_ms: float | None
    #: CPU per service / role, host CPU (`PhaseMonitor.record`)
    resources: dict[str, Any]
    span_files: int = 0
    span_bytes: int = 0
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def label(self) -> str:
        return "traced" if self.tracing else "untraced"

    def quantile(self, q: float) -> float | None:
        return float(np.quantile(self.latencies_ms, q)) if self.latencies_ms.size else None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["latencies_ms"]
        d["deliveries"] = int(self.latencies_ms.size)
        d.update({name: self.quantile(q) for name, (q, _) in TARGETS.items()})
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Arm:
        """An arm of an earlier results file, its latencies read again from its ledger."""
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "latencies_ms"}
        latencies = deliveries(read_ledger(Path(d["run_dir"])))["latency_ms"].to_numpy(dtype=float)
        return cls(**fields, latencies_ms=latencies)


def arm_dir(out: Path, pair: int, tracing: bool) -> Path:
    # the directory's name is the run id, and the collector files spans under the run id in its
    # own runs root: it must be unique there, hence the out dir's (unique) name in it
    which = f"p{pair}" if pair >= 0 else f"prime{-pair}"
    return out / f"{out.name}-{which}-{'on' if tracing else 'off'}"


def run_arm(setting: Setting, workload: Workload, pair: int, tracing: bool, console: Console) -> Arm:
    found = find_stack(setting.stack)
    # sampled from a thread of this process, the generator's (resources.py): the same in both arms
    monitor = PhaseMonitor(found.spec.services if found else (), interval_s=setting.monitor_interval_s)
    t0 = time.monotonic()
    with monitor:
        run_dir, result = run_bench(
            setting.stack,
            workload,
            out=arm_dir(Path(setting.out), pair, tracing),
            tracing=tracing,
            otlp_endpoint=collector_endpoint(),
            # the bench's own progress bar refreshes from the sending event loop: left out of both arms
            progress=False,
            console=console,
            collect_spans=False,  # gathered below, after the monitor
        )
        time.sleep(setting.settle_s)
    seconds = time.monotonic() - t0
    ledger = read_ledger(run_dir)
    lag_p99 = schedule_lag(measured(ledger)).get("p99") if ledger is not None else None
    latencies = deliveries(ledger)["latency_ms"].to_numpy(dtype=float)
    arm = Arm(
        pair=pair,
        tracing=tracing,
        seed=workload.seed,
        run_dir=str(run_dir),
        seconds=round(seconds, 2),
        events=result.sent_events,
        achieved_rate=round(result.achieved_rate, 2),
        schedule_lag_p99_ms=lag_p99,
        resources=monitor.record(result.sent_events, lag_p99),
        latencies_ms=latencies,
    )
    if tracing:
        arm.span_files, arm.span_bytes = gather_spans(run_dir)
    return arm


def gather_spans(run_dir: Path) -> tuple[int, int]:
    """Move the arm's span files from the collector's runs root into the arm's directory;
    (files, bytes) it holds."""
    root = collector_runs_root()
    dst = run_dir / SPANS_DIR
    if root is not None:
        move_spans(root, run_dir.name, dst)
    files = [f for f in dst.iterdir() if f.is_file()] if dst.is_dir() else []
    return len(files), sum(f.stat().st_size for f in files)


# --- the pairs -----------------------------------------------------------------------------


@dataclass
class Measurement:
    arms: list[Arm] = field(default_factory=list)
    stopped: str | None = None
    exit_code: int = 0

    def pairs(self) -> list[tuple[Arm, Arm]]:
        """(traced, untraced) of every complete measured pair, in pair order (priming left out)."""
        by_pair: dict[int, dict[bool, Arm]] = {}
        for a in self.arms:
            if a.pair >= 0:
                by_pair.setdefault(a.pair, {})[a.tracing] = a
        return [(p[True], p[False]) for _, p in sorted(by_pair.items()) if len(p) == 2]

    def primed(self) -> list[Arm]:
        return [a for a in self.arms if a.pair < 0]


def arm_order(pair: int) -> tuple[bool, bool]:
    """ABBA: traced first in even pairs, untraced first in odd ones."""
    return (True, False) if pair % 2 == 0 else (False, True)


def measure(setting: Setting, overrides: dict[str, Any], console: Console) -> Measurement:
    m = Measurement()
    columns = (
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, refresh_per_second=2) as progress:
        pairs = setting.pairs_requested
        task = progress.add_task("starting", total=2 * (setting.prime + pairs))
        # priming pairs (negative numbers, seeds below the first pair's) are run and discarded
        for i in range(-setting.prime, pairs):
            seed = overrides["seed"] + i
            workload = resolve_bench(setting.stack, setting.workload_name, overrides | {"seed": seed})
            for tracing in arm_order(i):
                label = "traced" if tracing else "untraced"
                what = f"pair {i + 1}/{pairs}" if i >= 0 else f"priming pair {-i}/{setting.prime} (discarded)"
                progress.update(task, description=f"{what}, {label} arm (seed {workload.seed})")
                try:
                    m.arms.append(run_arm(setting, workload, i, tracing, console))
                except PreflightError as exc:
                    m.stopped, m.exit_code = f"{exc} (no load was sent in this arm)", EXIT_PREFLIGHT
                except NotCleanError as exc:
                    m.stopped, m.exit_code = f"refused: {exc}", EXIT_NOT_CLEAN
                except KeyboardInterrupt:
                    m.stopped, m.exit_code = "interrupted", EXIT_INTERRUPTED
                if m.stopped:
                    m.stopped = f"{what}, {label} arm: {m.stopped}"
                    return m
                progress.advance(task)
    return m


# --- the measurement lock ------------------------------------------------------------------


def _held_by_an_ancestor() -> bool:
    # Under `flock /tmp/hopscope-measure.lock <this script>` our parent holds the lock: taking it
    # again on another open file would wait for ourselves.
    try:
        inode = LOCK_PATH.stat().st_ino
        holders = set()
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].split(":")[-1] == str(inode):
                holders.add(int(parts[4]))
        return bool(holders & {p.pid for p in psutil.Process().parents()})
    except (OSError, ValueError, psutil.Error):
        return False


@contextlib.contextmanager
def measurement_lock(console: Console) -> Iterator[None]:
    """Exclusive host-wide lock: two measurements on two cores would measure each other."""
    with LOCK_PATH.open("a") as fh:
        if _held_by_an_ancestor():
            yield
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.print(f"[yellow]waiting for another measurement[/] (lock {LOCK_PATH})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- CPU per process -----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuRow:
    process: str
    role: str
    traced_ms_per_event: float | None
    untraced_ms_per_event: float | None
    #: the difference per pair (traced − untraced): its spread is the noise of `diff`
    pair_diffs: tuple[float, ...]

    @property
    def diff(self) -> float | None:
        if self.traced_ms_per_event is None or self.untraced_ms_per_event is None:
            return None
        return self.traced_ms_per_event - self.untraced_ms_per_event

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"diff_ms_per_event": self.diff}


def role_of(name: str, record: dict[str, Any]) -> str:
    return "glue" if name == GLUE else ("loadgen" if name == LOADGEN else str(record["role"]))


def per_event_ms(arms: Sequence[Arm], name: str) -> float | None:
    """CPU ms per event of one process over arms (total CPU ÷ total events)."""
    cpu = [a.resources["services"][name]["cpu_s"] for a in arms]
    events = sum(a.events for a in arms)
    if not events or any(c is None for c in cpu):
        return None
    return 1e3 * sum(cpu) / events


def cpu_rows(pairs: list[tuple[Arm, Arm]]) -> list[CpuRow]:
    if not pairs:
        return []
    arms = [a for pair in pairs for a in pair]
    # a process no arm found (no glue processes on this stack, a service not deployed) is no row
    names = [
        n for n in arms[0].resources["services"] if any(a.resources["services"][n]["processes"] for a in arms)
    ]
    rows = []
    for name in names:
        t_arms, u_arms = [t for t, _ in pairs], [u for _, u in pairs]
        diffs = [per_event_ms([t], name) for t, _ in pairs], [per_event_ms([u], name) for _, u in pairs]
        rows.append(
            CpuRow(
                process=name,
                role=role_of(name, pairs[0][0].resources["services"][name]),
                traced_ms_per_event=per_event_ms(t_arms, name),
                untraced_ms_per_event=per_event_ms(u_arms, name),
                pair_diffs=tuple(
                    t - u for t, u in zip(*diffs, strict=True) if t is not None and u is not None
                ),
            )
        )
    return rows


def role_totals(rows: list[CpuRow]) -> list[CpuRow]:
    """One row per role and one for everything: where the extra CPU goes in bulk."""
    groups: dict[str, list[CpuRow]] = {}
    for r in rows:
        groups.setdefault(r.role, []).append(r)
    groups["all"] = rows

    def total(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    out = []
    for role, members in groups.items():
        n = min((len(r.pair_diffs) for r in members), default=0)
        out.append(
            CpuRow(
                process=f"all {role}" if role != "all" else "everything measured",
                role=role,
                traced_ms_per_event=total([r.traced_ms_per_event for r in members]),
                untraced_ms_per_event=total([r.untraced_ms_per_event for r in members]),
                pair_diffs=tuple(sum(r.pair_diffs[i] for r in members) for i in range(n)),
            )
        )
    return out


# --- output --------------------------------------------------------------------------------


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:+.1f} %"


def pair_table(pairs: list[tuple[Arm, Arm]]) -> Table:
    table = Table(title="per pair: ledger e2e (ms), overhead = traced ÷ untraced − 1")
    for col in ("pair", "order", "seed", "deliveries", "p50 on", "p50 off", "p50 overhead", "p99 on",
                "p99 off", "p99 overhead", "send lag p99 on/off", "host CPU % on/off"):  # fmt: skip
        table.add_column(col, justify="right")
    for t, u in pairs:
        first = "on→off" if arm_order(t.pair)[0] else "off→on"
        cells = []
        for _name, (q, _) in TARGETS.items():
            on, off = t.quantile(q), u.quantile(q)
            ratio = on / off - 1 if on is not None and off else None
            cells += [fmt(on), fmt(off), pct(ratio)]
        lag = f"{fmt(t.schedule_lag_p99_ms)}/{fmt(u.schedule_lag_p99_ms)}"
        host = f"{fmt(t.resources['host_cpu']['mean_percent'], '.0f')}/{fmt(u.resources['host_cpu']['mean_percent'], '.0f')}"
        table.add_row(
            str(t.pair + 1),
            first,
            str(t.seed),
            f"{t.latencies_ms.size:,}/{u.latencies_ms.size:,}",
            *cells,
            lag,
            host,
        )
    return table


def overhead_table(rows: list[Overhead], n_pairs: int, n_boot: int) -> Table:
    table = Table(
        title=f"overall latency overhead ({n_pairs} pairs pooled; {CONFIDENCE:.0%} interval: paired "
        f"bootstrap over pairs and deliveries, {n_boot} draws)"
    )
    for col in ("quantile", "traced ms", "untraced ms", "overhead", "95 % interval", "target",
                "interval reaches ≤ target", "verdict"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        verdict = r.verdict if r.supported else f"{r.verdict} (fewer than {MIN_TAIL} beyond {r.quantile})"
        style = {"under target": "green", "over target": "red"}.get(r.verdict, "yellow")
        table.add_row(
            r.quantile, fmt(r.traced_ms), fmt(r.untraced_ms), pct(r.overhead),
            f"{pct(r.ci_low)} … {pct(r.ci_high)}", f"≤ {r.target:.0%}",
            "yes" if r.ci_low <= r.target else "no", f"[{style}]{verdict}[/]",
        )  # fmt: skip
    return table


def cpu_table(rows: list[CpuRow], totals: list[CpuRow]) -> Table:
    table = Table(title="CPU ms per sent event (whole arm, settle included): traced vs untraced")
    for col in ("process", "role", "traced", "untraced", "difference", "per-pair difference min … max",
                "share of extra"):  # fmt: skip
        table.add_column(col, justify="right" if col not in ("process", "role") else "left")
    extra = totals[-1].diff if totals else None

    def add(r: CpuRow, style: str = "") -> None:
        spread = f"{min(r.pair_diffs):+.3f} … {max(r.pair_diffs):+.3f}" if r.pair_diffs else "–"
        share = f"{100 * r.diff / extra:.0f} %" if r.diff is not None and extra and extra > 0 else "–"
        table.add_row(
            r.process, r.role, fmt(r.traced_ms_per_event, ".3f"), fmt(r.untraced_ms_per_event, ".3f"),
            fmt(r.diff, "+.3f"), spread, share, style=style,
        )  # fmt: skip

    for r in sorted(rows, key=lambda r: -(r.diff or 0.0)):
        add(r)
    table.add_section()
    for r in totals:
        add(r, "bold")
    return table


def warnings(m: Measurement) -> list[str]:
    out = []
    for a in m.arms:
        tag = f"{f'pair {a.pair + 1}' if a.pair >= 0 else f'priming pair {-a.pair}'} {a.label}"
        out += [f"{tag}: host-bound ({reason})" for reason in a.resources.get("host_bound_reasons", [])]
        off = [n for n, s in a.resources["services"].items() if s.get("state") not in ("running", None)]
        if off:
            out.append(f"{tag}: not measured (not running / external): {', '.join(off)}")
        if a.tracing and a.span_bytes == 0:
            out.append(f"{tag}: no spans reached the collector's run folder (collector down?)")
    return out


def report(
    m: Measurement, setting: Setting, workload: Workload, boot: int, console: Console
) -> dict[str, Any]:
    pairs = m.pairs()
    over = overheads([t.latencies_ms for t, _ in pairs], [u.latencies_ms for _, u in pairs], boot)
    rows = cpu_rows(pairs)
    totals = role_totals(rows)
    console.print(
        f"[bold]{setting.stack} / {workload.name}[/]: {len(pairs)} pairs at {workload.rate:g} ev/s, "
        f"{workload.warmup_s:g} s warm-up + {workload.duration_s:g} s measured per arm, settle {setting.settle_s:g} s, "
        f"monitor sampling every {setting.monitor_interval_s:g} s"
    )
    primed = m.primed()
    if primed:
        console.print(
            "priming (discarded): "
            + ", ".join(f"{a.label} p50 {a.quantile(0.5) or float('nan'):.2f} ms" for a in primed)
        )
    if pairs:
        console.print(pair_table(pairs))
    if over:
        console.print(overhead_table(over, len(pairs), boot))
    if rows:
        console.print(cpu_table(rows, totals))
    for w in warnings(m):
        console.print(f"[yellow]warning:[/] {w}")
    if m.stopped:
        console.print(
            f"[red]stopped early[/] — {m.stopped}; the figures above are of the complete pairs only"
        )
    return {
        **asdict(setting),
        "workload": workload.model_dump(mode="json"),
        "stopped": m.stopped,
        "overhead": [o.to_json() for o in over],
        "interval": f"{CONFIDENCE:.0%} percentile interval, paired two-level bootstrap, {boot} draws",
        "cpu_ms_per_event": [r.to_json() for r in rows],
        "cpu_ms_per_event_totals": [r.to_json() for r in totals],
        "arms": [a.to_json() for a in m.arms],
        "warnings": warnings(m),
    }


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack")
    ap.add_argument("--workload", help="workload name or YAML path")
    ap.add_argument("--pairs", type=int, default=5, help="traced/untraced pairs (≥ 5 for a verdict)")
    ap.add_argument(
        "--prime",
        type=int,
        default=1,
        help="discarded pairs run first (the first after a start is the worst)",
    )
    ap.add_argument("--rate", type=float, default=40.0, help="events/s")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per arm")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per arm")
    ap.add_argument("--seed", type=int, default=1, help="seed of the first pair (pair i: seed + i)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after each arm, still measured")
    ap.add_argument(
        "--monitor-interval", type=float, default=0.5, help="s between CPU samples (the study's: 0.5)"
    )
    ap.add_argument("--boot", type=int, default=N_BOOT, help="bootstrap draws")
    ap.add_argument("--out", type=Path, help="directory of the arms' runs (default a new one under runs/)")
    ap.add_argument("--json", type=Path, help="results file (default <out>/overhead.json)")
    ap.add_argument(
        "--from",
        dest="from_json",
        type=Path,
        help="measure nothing: analyse again the arms of an earlier results file (e.g. with other "
        "--boot); writes only with --json",
    )
    args = ap.parse_args(argv)
    if args.from_json is None and not (args.stack and args.workload):
        ap.error("--stack and --workload are required (unless --from)")
    if args.pairs < 1 or args.prime < 0 or args.boot < 1 or args.settle < 0 or args.monitor_interval <= 0:
        ap.error("--pairs and --boot must be ≥ 1, --prime and --settle ≥ 0, --monitor-interval > 0")
    return args


def prepare_out(args: argparse.Namespace) -> Path:
    if args.out is None:
        DEFAULT_RUNS_DIR.mkdir(parents=True, exist_ok=True)
        return Path(
            tempfile.mkdtemp(
                prefix=f"overhead-{args.stack}-{Path(args.workload).stem}-", dir=DEFAULT_RUNS_DIR
            )
        )
    taken = [arm_dir(args.out, i, t) for i in range(-args.prime, args.pairs) for t in (True, False)]
    if any(p.exists() for p in taken):
        raise FileExistsError(f"{args.out} already holds arms of an earlier run: choose another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out


def reanalyse(args: argparse.Namespace, console: Console) -> int:
    try:
        doc = json.loads(args.from_json.read_text())
        m = Measurement([Arm.from_json(a) for a in doc["arms"]], stopped=doc.get("stopped"))
        workload = Workload.model_validate(doc["workload"])
        # files written before these were recorded: the defaults they ran with
        known = {"workload_name": doc["workload"]["name"], "monitor_interval_s": 0.5, "prime": 0} | doc
        setting = Setting(**{k: known[k] for k in Setting.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        console.print(f"[red]error:[/] {args.from_json}: not a results file of this script ({exc})")
        return EXIT_USAGE
    doc = report(m, setting, workload, args.boot, results_console())
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=float))
        console.print(f"results: {args.json}")
    return 0


def results_console() -> Console:
    stdout = Console()
    # piped into a file the tables would wrap at 80 columns
    return stdout if stdout.is_terminal else Console(width=170)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    if args.from_json is not None:
        return reanalyse(args, console)
    overrides: dict[str, Any] = {
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "seed": args.seed,
    }
    try:
        workload = resolve_bench(args.stack, args.workload, overrides)
        out = prepare_out(args)
    except (WorkloadError, StackError, FileExistsError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return EXIT_USAGE
    setting = Setting(
        args.stack, args.workload, args.pairs, args.prime, args.settle, args.monitor_interval, str(out)
    )
    with measurement_lock(console):
        m = measure(setting, overrides, console)
    doc = report(m, setting, workload, args.boot, results_console())
    path = args.json or out / "overhead.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=float))
    console.print(f"runs: {out}\nresults: {path}")
    return m.exit_code


if __name__ == "__main__":
    sys.exit(main())
