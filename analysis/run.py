"""`load(RUN_DIR) -> Run`: the analysis of one run directory as pandas DataFrames and networkx graphs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hopscope.core.rundir import (
    EXPERIMENT,
    GRAPH_FILES,
    INGEST_REPORT,
    LEDGER,
    MANIFEST,
    MANIFEST_SHAPE,
    QUALITY,
    SPANS_DIR,
    SPANS_PARQUET,
    RunDirError,
    graph_file,
    read_json_file,
    run_file,
    table_file,
)
from hopscope.core.schema import SPAN_SCHEMA

from . import allocator, clock_skew, critical_path, graph, quality, timeline
from . import ledger as ledger_figures
from . import verdicts as verdict_math
from .foreign import ForeignInfo, attribute_foreign
from .hops import Deliveries, HopValues, find_deliveries, hop_values, pair_codes
from .mapping import Mapping
from .outputs import atomic_file, staged_outputs
from .resources import resources_frame
from .run_files import EXPERIMENT_SHAPE, INGEST_REPORT_SHAPE, check_ledger_schema
from .service_map import read_service_map
from .span_arrays import SpanArrays
from .span_file import (
    BOUNDED_COLUMNS,
    MAX_VALUE_BYTES,
    NEEDED_COLUMNS,
    REQUIRED_VALUES,
    ParquetColumns,
    bound_values,
    check_span_schema,
    damage,
)
from .spans import prepare
from .stats import NS_PER_MS, QUANTILES, PairMatrix, build_matrix, distribution, growth_rows, hop_rows
from .waterfall import WATERFALL_COLUMNS, Target, waterfalls

T = TypeVar("T")
R = TypeVar("R")

#: the per-hop distribution columns both stats tables share: mean, std, the QUANTILES, max (ms)
_DISTRIBUTION_COLUMNS = ["mean_ms", "std_ms", *QUANTILES, "max_ms"]

HOP_STATS_COLUMNS = [
    "stack",
    "workload",
    "hop",
    "order",
    "count",
    *_DISTRIBUTION_COLUMNS,
    "var_share",
    "tail_share_p99",
    "tail_share_p999",
    "crit_share",
    "mean_offset_ms",
]


#: the trace e2e per stack × workload (`Run.e2e_summary`, e2e_summary.parquet)
E2E_SUMMARY_COLUMNS = ["stack", "workload", "count", *_DISTRIBUTION_COLUMNS]

#: the growth of the path's tail along its hops (`Run.tail_growth`, tail_growth.parquet)
TAIL_GROWTH_COLUMNS = ["stack", "workload", "hop", "order", "p50_ms", "p99_ms", "p999_ms"]

#: critical-path modes: `event` (the attribution; follows links across brokers) and `jaeger`
#: (Jaeger UI's per-trace path, reported beside the event-mode figures)
MODES = ("event", "jaeger")

JAEGER_STATS_COLUMNS = [
    "stack",
    "workload",
    "hop",
    "order",
    "traces",
    *_DISTRIBUTION_COLUMNS,
    "crit_share",
]


#: the deliveries the report opens per stack × workload: (pick, quantile of the e2e); the
#: delivery at a quantile is the order statistic of nearest rank (ceil(q · n)), 1.0 the slowest
SAMPLE_PICKS = (("p50", 0.5), ("p99", 0.99), ("slowest", 1.0))

SAMPLE_COLUMNS = ["stack", "workload", "pick", "deliveries", "trace_id", "subscriber", "e2e_ms"]


class UnknownTrace(LookupError):
    """A trace id (or a delivery of a trace) the run does not have."""


class NoSpans(RunDirError):
    """The run directory holds no span table (spans.parquet). `span_files`: it has span files
    under spans/ that were not ingested (else nothing reached the run at all)."""

    def __init__(self, message: str, *, span_files: bool) -> None:
        super().__init__(message)
        self.span_files = span_files


def _read_spans(run_dir: Path) -> ParquetColumns:
    path = run_dir / SPANS_PARQUET
    if run_file(path) is None:
        spans = run_dir / SPANS_DIR
        if spans.is_dir() and any(p.is_file() for p in spans.rglob("*")):
            raise NoSpans(
                f"{path} is missing: ingest {spans}/ first (`hopscope ingest {spans} --out {run_dir}`; "
                "`hopscope analyze` does it)",
                span_files=True,
            )
        raise NoSpans(
            f"{run_dir}: neither {SPANS_PARQUET} nor span files under {SPANS_DIR}/ — nothing to analyse "
            f"(run `hopscope ingest SRC --out {run_dir}` first)",
            span_files=False,
        )
    try:
        cols = ParquetColumns(str(path))
        schema = cols._file.schema_arrow
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:  # a footer that is not UTF-8 too
        raise RunDirError(f"{path}: cannot read as Parquet ({exc})") from exc
    check_span_schema(schema, str(path))
    missing = [
        c
        for c in ("trace_id", "span_id", "parent_span_id", "start_ns", "end_ns")
        if c not in cols.column_names
    ]
    if missing:
        raise RunDirError(f"{path}: required column(s) {missing} missing")
    # prepare() reads it column by column: one Arrow column alive at a time, low-cardinality
    # strings dictionary-encoded.
    return cols


def _may_hold_foreign(cols: ParquetColumns) -> bool:
    """Some span has no stack (a foreign trace has none): from the row groups' statistics when
    the file has them, else by reading the column."""
    if "stack" not in cols.column_names:
        return True
    meta = cols._file.metadata
    leaves = cols._file.schema  # Parquet leaf columns: nested ones (links, maps) count several
    at = next((i for i in range(len(leaves)) if leaves.column(i).path == "stack"), None)
    if at is None:
        return True
    nulls = 0
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(at).statistics
        if stats is None or not stats.has_null_count:
            return pq.read_table(cols.path, columns=["stack"]).column("stack").null_count > 0
        nulls += stats.null_count
    return nulls > 0


def _complete_columns(table: pa.Table, truncated: dict[str, int]) -> pa.Table:
    """Add optional SPAN_SCHEMA columns a foreign table may lack, as nulls; cut string values
    over MAX_VALUE_BYTES (counted in `truncated`) as ParquetColumns does."""
    for name in REQUIRED_VALUES:
        if name in table.column_names and table.column(name).null_count:
            raise RunDirError(
                f"span table: column {name}: {table.column(name).null_count} span(s) without a value"
            )
    for name in NEEDED_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(
                SPAN_SCHEMA.field(name), pa.nulls(table.num_rows, SPAN_SCHEMA.field(name).type)
            )
        elif name in BOUNDED_COLUMNS:
            col, cut = bound_values(table.column(name))
            if cut:
                truncated[name] = cut
                table = table.set_column(table.column_names.index(name), name, col)
    return table


def _read_json(path: Path, shape: object = None) -> dict:
    return read_json_file(path, shape)  # type: ignore[arg-type]


def read_ledger(run_dir: Path) -> pd.DataFrame | None:
    """RUN_DIR's ledger as a frame (None when the run has none); a RunDirError names the file
    and the column when it cannot be used."""
    path = run_dir / LEDGER
    if run_file(path) is None:
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: cannot read as Parquet ({exc})") from exc
    check_ledger_schema(table, str(path))
    try:
        return table.to_pandas()
    except (pa.ArrowException, UnicodeDecodeError, ValueError) as exc:  # e.g. a string that is not UTF-8
        for name in table.column_names:
            try:
                table.column(name).validate(full=True)
            except pa.ArrowException as bad:
                raise RunDirError(f"{path}: column {name}: damaged data ({bad})") from exc
        raise RunDirError(f"{path}: cannot be read ({exc})") from exc


def _on_two_threads(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """fn over the items on two threads, results in order: the pairs' statistics are numpy
    passes that release the GIL, and this machine has two cores."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pairs") as pool:
        return list(pool.map(fn, items))


@dataclass
class _Core:
    sa: SpanArrays
    pair_of_trace: np.ndarray
    pairs: list[tuple[str, str]]
    skew: clock_skew.SkewResult
    deliveries: Deliveries
    values: HopValues
    #: per trace: its event is a warm-up event in the ledger (left out of every figure)
    warmup: np.ndarray
    #: per delivery: its path does not reach a true root (before warm-up was left out)
    broken: np.ndarray


class Run:
    """One analysed run. Build it with `load(run_dir)` or `Run.from_table(table, ...)`."""

    def __init__(
        self,
        table: pa.Table | ParquetColumns,
        *,
        manifest: dict | None = None,
        ledger: pd.DataFrame | None = None,
        ingest_report: dict | None = None,
        run_dir: Path | None = None,
        correct_skew: bool = True,
        mode: str = "event",
        label: str | None = None,
        mapping: Mapping | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"critical-path mode {mode!r}: choose one of {', '.join(MODES)}")
        self.mode = mode
        self.run_dir = run_dir
        self.manifest = manifest or {}
        self.ledger = ledger
        self.ingest_report = ingest_report or {}
        self.correct_skew = correct_skew
        #: foreign traces' stack name (`foreign.py`; default: the run directory's name)
        self.label = label or (run_dir.name if run_dir is not None else "traces")
        self.mapping = mapping
        self._foreign: ForeignInfo | None = None
        #: string values cut to MAX_VALUE_BYTES while loading, per column
        self.truncated: dict[str, int] = {}
        self._table: pa.Table | ParquetColumns | None = (
            table if isinstance(table, ParquetColumns) else _complete_columns(table, self.truncated)
        )

    @classmethod
    def from_table(cls, table: pa.Table, **kwargs: object) -> Run:
        return cls(table, **kwargs)  # type: ignore[arg-type]

    # -- core computation (vectorised, done once) ------------------------------------------

    @cached_property
    def _core(self) -> _Core:
        assert self._table is not None
        allocator.keep_freed_memory()
        sa = prepare(self._attributed_table())
        if isinstance(self._table, ParquetColumns):
            self.truncated.update(self._table.truncated)
        self._table = None  # the arrays hold what the analysis needs; free the Arrow copy
        # Arrow's pool keeps what the columns took (~0.7 GB at 10 M spans) for Arrow alone;
        # given back now, the arrays below get those pages while they are still warm
        pa.default_memory_pool().release_unused()
        pair_of_trace, pairs = pair_codes(sa)
        _ = sa.event_parent  # made once here, before the two threads below read it
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-roots") as pool:
            # the roots find_deliveries needs, found while the clocks are corrected (both kernels
            # release the GIL)
            roots = pool.submit(lambda: sa.event_top)
            if self.correct_skew:
                skew = clock_skew.correct(sa)
            else:
                skew = clock_skew.SkewResult(sa.start, sa.end, np.zeros(sa.n, bool))
            roots.result()
        dl = find_deliveries(sa, pair_of_trace, len(pairs), skew.end)
        # Warm-up events (the ledger marks them) reach no figure: their deliveries are not walked.
        warm = self._warmup_traces(sa)
        broken = ~dl.valid
        dl.valid = dl.valid & ~warm[dl.trace]
        hv = hop_values(sa, dl, skew.start, skew.end, pair_of_trace[dl.trace], len(pairs))
        return _Core(
            sa=sa, pair_of_trace=pair_of_trace, pairs=pairs, skew=skew, deliveries=dl, values=hv,
            warmup=warm, broken=broken,
        )  # fmt: skip

    def _attributed_table(self) -> pa.Table | ParquetColumns:
        """The span table with foreign traces given hops, workloads, stack and deliveries
        (`foreign.attribute_foreign`: the one place). A span file whose every span names a stack
        is hopscope's own and is read column by column as before."""
        table = self._table
        assert table is not None
        if isinstance(table, ParquetColumns):
            if not _may_hold_foreign(table):
                return table
            names = [c for c in NEEDED_COLUMNS if c in table.column_names]
            table = _complete_columns(pq.read_table(table.path, columns=names), self.truncated)
        if "stack" in table.column_names and table.column("stack").null_count == 0:
            return table  # every span names a stack: no trace is foreign (a partition of a large run)
        out, self._foreign = attribute_foreign(table, self.label, self.mapping)
        return out

    @property
    def foreign(self) -> ForeignInfo | None:
        """What the foreign-trace defaults and the mapping did (None: no foreign trace)."""
        _ = self._core
        return self._foreign

    def _warmup_traces(self, sa: SpanArrays) -> np.ndarray:
        """Per trace: its event id is a warm-up event's in the ledger."""
        warm_ids = ledger_figures.warmup_events(self.ledger)["event_id"].dropna().astype(str).unique()
        if len(warm_ids) == 0 or sa.n_traces == 0:
            return np.zeros(sa.n_traces, bool)
        hit = pc.is_in(sa.trace_event_arrow, value_set=pa.array(warm_ids, pa.string()))
        return np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

    @cached_property
    def _matrices(self) -> dict[tuple[str, str], tuple[PairMatrix, np.ndarray]]:
        """Per pair: the deliveries × hops matrix and the delivery indices of its rows."""
        c = self._core
        dl, hv = c.deliveries, c.values
        pair_of_delivery = c.pair_of_trace[dl.trace]
        local_of = np.full(len(dl.target), -1, np.int64)  # delivery -> its row in its pair's matrix

        def one(p: int) -> tuple[PairMatrix, np.ndarray]:
            rows = slice(hv.pair_rows[p], hv.pair_rows[p + 1])  # hop_values groups them by pair
            members = np.flatnonzero(dl.valid & (pair_of_delivery == p))
            local_of[members] = np.arange(len(members))  # pairs own disjoint deliveries
            m = build_matrix(
                local_of[hv.delivery[rows]],
                hv.label[rows],
                hv.value_ns[rows],
                hv.offset_ns[rows],
                len(members),
                hv.label_names,
            )
            return m, members

        return dict(zip(c.pairs, _on_two_threads(one, range(len(c.pairs))), strict=True))

    # -- public API ---------------------------------------------------------------------------

    def pairs(self) -> list[tuple[str, str]]:
        """(stack, workload) pairs present in the spans, sorted."""
        return list(self._core.pairs)

    def expected_hops(self, stack: str, workload: str) -> list[str]:
        """Ordered expected hops from the manifest (empty if the manifest does not say)."""
        per_stack = (self.manifest.get("expected_hops") or {}).get(stack) or {}
        return list(per_stack.get(workload) or [])

    def hop_stats(self) -> pd.DataFrame:
        rows = []
        matrices = self._matrices
        per_pair = _on_two_threads(lambda pair: hop_rows(matrices[pair][0]), list(matrices))
        for (stack, workload), rows_of_pair in zip(matrices, per_pair, strict=True):
            for r in rows_of_pair:
                rows.append({"stack": stack, "workload": workload, **r})
        return pd.DataFrame(rows, columns=HOP_STATS_COLUMNS)

    def pair_matrices(self) -> dict[tuple[str, str], PairMatrix]:
        """Per stack × workload: the deliveries × hops matrix of critical-path time (ns) every
        statistic is computed from, its columns in path order (what a distributed analysis
        summarises per partition, `analysis/distributed`)."""
        return {pair: m for pair, (m, _members) in self._matrices.items()}

    def e2e_summary(self) -> pd.DataFrame:
        """Per stack × workload: the analysed deliveries' trace e2e — count, mean, std, p50…p999,
        max (ms), exact quantiles (`E2E_SUMMARY_COLUMNS`; the distributed path's are sketched)."""
        rows = []
        for (stack, workload), (m, _members) in self._matrices.items():
            e = m.values.sum(1) / NS_PER_MS
            rows.append({"stack": stack, "workload": workload, "count": len(e), **distribution(e)})
        return pd.DataFrame(rows, columns=E2E_SUMMARY_COLUMNS)

    def tail_growth(self) -> pd.DataFrame:
        rows = []
        for (stack, workload), (m, _members) in self._matrices.items():
            for r in growth_rows(m):
                rows.append({"stack": stack, "workload": workload, **r})
        return pd.DataFrame(rows, columns=TAIL_GROWTH_COLUMNS)

    def _delivery_frame(self, idx: np.ndarray) -> pd.DataFrame:
        c = self._core
        dl = c.deliveries
        tr = dl.trace[idx]
        take = pa.array(tr)
        # factorized, not np.unique over .astype(str): a fixed-width copy of every trace's name
        # is as wide as the longest name
        stacks, stack_codes = pd.factorize(c.sa.trace_stack.astype(object))
        works, work_codes = pd.factorize(c.sa.trace_workload.astype(object))
        subs = dl.subscriber[idx]
        return pd.DataFrame(
            {
                "stack": pd.Categorical.from_codes(stacks[tr], list(stack_codes)).astype(str),
                "workload": pd.Categorical.from_codes(works[tr], list(work_codes)).astype(str),
                "event_id": c.sa.trace_event_arrow.take(take).to_pandas(),
                "subscriber": pd.Series(subs, dtype=object),
                "trace_id": c.sa.trace_id_arrow.take(take).to_pandas(),
            }
        )

    def e2e(self) -> pd.DataFrame:
        """One row per analysed delivery: stack, workload, event_id, subscriber, trace_id, e2e_ms,
        start_ns (its root's start: the event's intended send time); with a ledger also
        ledger_e2e_ms and unattributed_ms."""
        return self._e2e.copy()

    @cached_property
    def _e2e(self) -> pd.DataFrame:
        # made once: the report, the quality counts, the verdicts and the timeline all read it
        c = self._core
        idx = np.flatnonzero(c.deliveries.valid)
        df = self._delivery_frame(idx)
        df["e2e_ms"] = c.values.e2e_ns[idx] / NS_PER_MS
        df["start_ns"] = c.skew.start[c.deliveries.root[idx]]
        if self.ledger is not None and len(self.ledger):
            rec = self._ledger_receipts()
            df["_sub"] = df["subscriber"].fillna("").astype(str)
            df = df.merge(rec, how="left", on=["stack", "workload", "event_id", "_sub"]).drop(columns="_sub")
            df["unattributed_ms"] = df["ledger_e2e_ms"] - df["e2e_ms"]
        return df

    def _ledger_receipts(self) -> pd.DataFrame:
        led = self.ledger
        assert led is not None
        ex = led[["stack", "workload", "event_id", "intended_ns", "receipts"]].explode("receipts")
        ex = ex[ex["receipts"].notna()]
        rec = pd.DataFrame(
            {
                "stack": ex["stack"].to_numpy(),
                "workload": ex["workload"].to_numpy(),
                "event_id": ex["event_id"].to_numpy(),
                "_sub": [r["subscriber"] or "" for r in ex["receipts"]],
                "ledger_e2e_ms": (
                    np.array([r["received_ns"] for r in ex["receipts"]], dtype=np.int64)
                    - ex["intended_ns"].to_numpy(np.int64)
                )
                / NS_PER_MS,
            }
        )
        # A delivery in a pair without subscribers matches the event's single receipt, if any.
        return rec.drop_duplicates(["stack", "workload", "event_id", "_sub"])

    def hop_values(self) -> pd.DataFrame:
        """The long table the statistics come from: one row per delivery × hop on its critical path."""
        c = self._core
        hv = c.values
        df = self._delivery_frame(hv.delivery)
        df["hop"] = hv.label_names[hv.label]
        df["value_ms"] = hv.value_ns / NS_PER_MS
        df["offset_ms"] = hv.offset_ns / NS_PER_MS
        stats = self.hop_stats()[["stack", "workload", "hop", "order"]]
        return df.merge(stats, how="left", on=["stack", "workload", "hop"])

    def transitions(self, stack: str, workload: str) -> pd.DataFrame:
        """Counts of (previous hop, hop) along the deliveries' paths (prev None = first hop): the
        hop graph's edges."""
        return self._transitions(stack, workload)

    def _transitions(self, stack: str, workload: str) -> pd.DataFrame:
        """Counts of (previous hop, hop) along the deliveries' paths (previous None = first hop)."""
        c = self._core
        hv = c.values
        p = c.pairs.index((stack, workload))
        sel = np.flatnonzero(c.pair_of_trace[c.deliveries.trace[hv.delivery]] == p)
        d, lab, off = hv.delivery[sel], hv.label[sel], hv.offset_ns[sel]
        o = np.lexsort((off, d))
        d, lab = d[o], lab[o]
        first = np.ones(len(d), bool)
        first[1:] = d[1:] != d[:-1]
        prev = np.where(first, -1, np.roll(lab, 1))
        k = len(hv.label_names) + 1
        pairs, n = np.unique((prev + 1).astype(np.int64) * k + lab, return_counts=True)
        names = np.append(hv.label_names, None)
        return pd.DataFrame({"prev": names[pairs // k - 1], "hop": names[pairs % k], "n": n})

    def graph(self, stack: str, workload: str) -> nx.DiGraph:
        stats = self.hop_stats()
        stats = stats[(stats["stack"] == stack) & (stats["workload"] == workload)]
        if stats.empty:
            raise KeyError(f"no deliveries for stack={stack!r} workload={workload!r}")
        return graph.build(stack, workload, stats, self._transitions(stack, workload))

    def service_map(self) -> pd.DataFrame:
        """The run's service map (`service_map.SERVICE_MAP_COLUMNS`): per client → server edge its
        spans name, calls, errors and the naming span's p50/p99/max, warm-up events left out.
        Read from the run's span file (needs a run directory)."""
        if self.run_dir is None or not (self.run_dir / SPANS_PARQUET).exists():
            raise RunDirError(
                "the service map is read from a run directory's spans.parquet; this run has none"
            )
        warm = ledger_figures.warmup_events(self.ledger)["event_id"].dropna().astype(str)
        return read_service_map(self.run_dir / SPANS_PARQUET, set(warm))

    # -- single deliveries and time -------------------------------------------------------------

    def _trace_code(self, trace_id: str) -> int:
        ids = self._core.sa.trace_id_arrow
        for candidate in dict.fromkeys((trace_id, trace_id.strip().lower())):
            at = pc.index(ids, pa.scalar(candidate, ids.type)).as_py()
            if at >= 0:
                return int(at)
        where = f" in {self.run_dir}" if self.run_dir is not None else ""
        raise UnknownTrace(f"trace {trace_id!r}: no such trace{where}")

    def _target(self, delivery: int) -> Target:
        c = self._core
        dl = c.deliveries
        trace = int(dl.trace[delivery])
        return Target(
            trace=trace, span=int(dl.target[delivery]), root=int(dl.root[delivery]),
            walkable=not bool(c.broken[delivery]), warmup=bool(c.warmup[trace]),
        )  # fmt: skip

    def trace(self, trace_id: str, subscriber: str | None = None) -> pd.DataFrame:
        """The waterfall of one trace's event (`waterfall.WATERFALL_COLUMNS`): one row per span, in
        Jaeger's row order, with the event-mode critical path of one of its deliveries marked —
        `subscriber`'s, by default the slowest. Offsets are from that delivery's root start, on the
        clock-skew-corrected times every figure uses. A trace without a delivery (or whose path
        reaches no true root) has its spans and no path. UnknownTrace when the run has no such
        trace, or the trace no such subscriber."""
        c = self._core
        dl = c.deliveries
        code = self._trace_code(trace_id)
        mine = np.flatnonzero(dl.trace == code)
        if subscriber is not None:
            mine = mine[dl.subscriber[mine] == subscriber]
            if len(mine) == 0:
                have = sorted({str(s) for s in dl.subscriber[dl.trace == code] if s is not None})
                raise UnknownTrace(
                    f"trace {trace_id}: no delivery to subscriber {subscriber!r} "
                    f"(its deliveries: {', '.join(have) or 'none named'})"
                )
        if len(mine) == 0:
            target = Target(trace=code, warmup=bool(c.warmup[code]))
        else:
            whole = mine[~c.broken[mine]]
            pool = whole if len(whole) else mine
            ends = c.skew.end[dl.target[pool]] - c.skew.start[np.maximum(dl.root[pool], 0)]
            target = self._target(int(pool[np.argmax(ends)]))
        return waterfalls(c.sa, c.skew.start, c.skew.end, [target])[0]

    @cached_property
    def _samples(self) -> tuple[pd.DataFrame, np.ndarray]:
        c = self._core
        idx = np.flatnonzero(c.deliveries.valid)
        e2e = c.values.e2e_ns[idx]
        pair = c.pair_of_trace[c.deliveries.trace[idx]]
        rows, chosen = [], []
        for p, (stack, workload) in enumerate(c.pairs):
            members, values = idx[pair == p], e2e[pair == p]
            n = len(members)
            if n == 0:
                continue
            ranked = members[np.argsort(values, kind="stable")]
            picks: dict[int, list[str]] = {}
            for label, q in SAMPLE_PICKS:
                rank = min(max(int(np.ceil(q * n - 1e-9)), 1), n)  # nearest rank, 1-based
                picks.setdefault(int(ranked[rank - 1]), []).append(label)
            for d, labels in picks.items():
                rows.append(
                    {"stack": stack, "workload": workload, "pick": ", ".join(labels), "deliveries": n}
                )
                chosen.append(d)
        take = np.asarray(chosen, dtype=np.int64)
        frame = pd.DataFrame(rows, columns=["stack", "workload", "pick", "deliveries"])
        if len(take):
            named = self._delivery_frame(take)
            frame["trace_id"] = named["trace_id"].to_numpy()
            frame["subscriber"] = named["subscriber"].to_numpy()
            frame["e2e_ms"] = c.values.e2e_ns[take] / NS_PER_MS
        return frame.reindex(columns=SAMPLE_COLUMNS), take

    def sample_deliveries(self) -> pd.DataFrame:
        """Per stack × workload, the analysed deliveries at p50 and p99 of the trace e2e (nearest
        rank) and the slowest (`SAMPLE_COLUMNS`; one row per delivery: `pick` names every pick it
        is, e.g. "p99, slowest" when n is small)."""
        return self._samples[0].copy()

    def delivery_waterfalls(self) -> pd.DataFrame:
        """The waterfalls of `sample_deliveries()`: its `pick` and `deliveries` columns, then
        `waterfall.WATERFALL_COLUMNS`, one row per span, the picks in their order."""
        picks, take = self._samples
        c = self._core
        frames = waterfalls(c.sa, c.skew.start, c.skew.end, [self._target(int(d)) for d in take])
        parts = [
            f.assign(pick=pick, deliveries=n)
            for f, pick, n in zip(frames, picks["pick"], picks["deliveries"], strict=True)
        ]
        columns = ["pick", "deliveries", *WATERFALL_COLUMNS]
        return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)

    def phases(self) -> pd.DataFrame:
        """The stretches each stack × workload ran (`timeline.PHASE_COLUMNS`): from the ledger, one
        per phase_id (a `hopscope run`) or repeat, with where its warm-up ended; without a
        ledger, one per stack × workload over its deliveries."""
        return timeline.phases(self.ledger, self.e2e())

    def latency_per_second(self) -> pd.DataFrame:
        """Per stack × workload × phase × second since the phase's start, the deliveries that
        started in it and the p50 / p99 of their trace e2e (`timeline.PER_SECOND_COLUMNS`)."""
        e2e = self.e2e()
        return timeline.per_second(e2e, timeline.phases(self.ledger, e2e))

    # -- Jaeger mode -----------------------------------------------------------------------------

    @cached_property
    def _jaeger(self) -> pd.DataFrame:
        """Per trace × hop: time on Jaeger UI's critical path (critical_path.jaeger_paths, on the
        clock-skew-corrected times), summed over the trace's roots."""
        c = self._core
        sa = c.sa
        sec, roots = critical_path.jaeger_paths(sa, c.skew.start, c.skew.end)
        trace = sa.trace[roots[sec.walker]]
        n_labels = max(len(sa.hop_names), 1)
        key = trace * n_labels + sec.label
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]]) if len(ks) else np.zeros(0, np.int64)
        length = (sec.end - sec.start)[order]
        value = np.add.reduceat(length, starts) if len(ks) else np.zeros(0, np.int64)
        first = np.minimum.reduceat(sec.start[order], starts) if len(ks) else np.zeros(0, np.int64)
        tr = ks[starts] // n_labels if len(ks) else np.zeros(0, np.int64)
        label = ks[starts] % n_labels if len(ks) else np.zeros(0, np.int64)
        path = np.bincount(trace, weights=sec.end - sec.start, minlength=sa.n_traces)
        origin = np.full(sa.n_traces, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(origin, trace, sec.start)
        take = pa.array(tr)
        return pd.DataFrame(
            {
                # object arrays (pandas stores them as str): not fixed-width copies
                "stack": sa.trace_stack.astype(object)[tr],
                "workload": sa.trace_workload.astype(object)[tr],
                "trace_id": sa.trace_id_arrow.take(take).to_pandas(),
                "event_id": sa.trace_event_arrow.take(take).to_pandas(),
                "hop": sa.hop_names.astype(object)[label],
                "value_ms": value / NS_PER_MS,
                "offset_ms": (first - origin[tr]) / NS_PER_MS,
                "path_ms": path[tr] / NS_PER_MS,
            }
        )

    def jaeger_paths(self) -> pd.DataFrame:
        """One row per trace × hop on the trace's Jaeger-mode critical path (Jaeger UI's
        algorithm: no link is followed, a PRODUCER's CONSUMER child is pruned): the hop's time
        on the path (`value_ms`), its first section's start after the path's (`offset_ms`) and
        the whole path (`path_ms`)."""
        return self._jaeger.copy()

    def jaeger_stats(self) -> pd.DataFrame:
        """Per stack × workload × hop, over the traces whose Jaeger-mode path holds the hop:
        count (`traces`), mean/std/p50…p999/max (ms); `crit_share` = the hop's share of all
        Jaeger-path time of the stack × workload; `order` by mean offset."""
        df = self._jaeger
        if df.empty:
            return pd.DataFrame(columns=JAEGER_STATS_COLUMNS)
        rows = []
        for (stack, workload), g in df.groupby(["stack", "workload"], sort=True):
            total = g.drop_duplicates("trace_id")["path_ms"].sum()
            by_hop = g.groupby("hop", sort=False)
            offsets = by_hop["offset_ms"].mean().sort_values(kind="stable")
            for j, hop in enumerate(offsets.index):
                v = by_hop.get_group(hop)["value_ms"].to_numpy(dtype=float)
                row = {"stack": stack, "workload": workload, "hop": hop, "order": j, "traces": len(v)}
                row.update(distribution(v))
                row["crit_share"] = float(v.sum() / total) if total > 0 else np.nan
                rows.append(row)
        return pd.DataFrame(rows, columns=JAEGER_STATS_COLUMNS)

    # -- verdicts ---------------------------------------------------------------------------------

    @property
    def verdict_figure(self) -> str:
        """The end-to-end figure the verdicts use: `ledger e2e` (intended send → each expected
        subscriber's first receipt, from the ledger) when the run has a ledger with receipts,
        else `trace e2e` (root start → delivery span end)."""
        return "ledger e2e" if len(self._ledger_deliveries) else "trace e2e"

    @cached_property
    def _ledger_deliveries(self) -> pd.DataFrame:
        return ledger_figures.deliveries(self.ledger)

    def verdict_latencies(self) -> pd.DataFrame:
        """What the verdicts are computed from: one row per measured delivery (warm-up left
        out) with workload, stack, repeat, target_rate, latency_ms — the `verdict_figure`."""
        d = self._ledger_deliveries
        if len(d):
            return d[["workload", "stack", "repeat", "target_rate", "latency_ms"]].reset_index(drop=True)
        e = self.e2e()
        return pd.DataFrame(
            {"workload": e["workload"], "stack": e["stack"], "repeat": 0, "target_rate": np.nan,
             "latency_ms": e["e2e_ms"].to_numpy(float)}
        )  # fmt: skip

    def sweeps(self) -> pd.DataFrame:
        """Rate sweeps from the ledger: per workload × stack × offered rate, the step's figures,
        the knee and the highest rate sustained below it (`ledger.sweep_steps`)."""
        return self._sweeps.copy()

    @cached_property
    def _sweeps(self) -> pd.DataFrame:
        return ledger_figures.sweep_steps(self.ledger, self._ledger_deliveries)

    def sweep_rates(self) -> dict[str, dict[str, object]]:
        """Per sweep workload: each stack's highest rate sustained below its knee (None when the
        first step is past it), and the rate the verdict compares the stacks at (the highest
        rate every stack sustains; the lowest offered rate when one sustains none)."""
        out: dict[str, dict[str, object]] = {}
        sw = self._sweeps
        for workload, g in sw.groupby("workload", sort=False):
            own: dict[str, float | None] = {}
            for stack, sg in g.groupby("stack", sort=False):
                top = sg[sg["sustained"]]
                own[str(stack)] = float(top["target_rate"].iloc[0]) if len(top) else None
            known = [r for r in own.values() if r is not None]
            common = min(known) if known and len(known) == len(own) else float(g["target_rate"].min())
            out[str(workload)] = {"sustained": own, "compared_at": common}
        return out

    @cached_property
    def _verdict_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        lat = self.verdict_latencies()
        rates = self.sweep_rates()
        compared_at = {w: r["compared_at"] for w, r in rates.items()}
        at = lat["workload"].map(compared_at).astype(float)
        compared = lat[at.isna() | np.isclose(lat["target_rate"], at)]
        est, ver = verdict_math.analyse(compared)
        est["basis"] = np.where(est["workload"].isin(list(rates)), "compared rate", "all")
        est["rate"] = est["workload"].map(compared_at)
        ver["rate"] = ver["workload"].map(compared_at)
        own = []
        for workload, r in rates.items():
            for stack, rate in r["sustained"].items():  # type: ignore[union-attr]
                if rate is None:
                    continue
                sel = lat[
                    (lat["workload"] == workload)
                    & (lat["stack"] == stack)
                    & np.isclose(lat["target_rate"], rate)
                ]
                e, _ = verdict_math.analyse(sel)
                own.append(e.assign(basis="sustained rate", rate=rate))
        if own:
            est = pd.concat([est, *own], ignore_index=True)
        return est, ver

    def estimates(self) -> pd.DataFrame:
        """Per workload × stack × quantile (p50, p99, p99.9): the `verdict_figure`'s value, its 95 %
        interval (two-level bootstrap over repeats and deliveries), n, repeats, samples beyond it,
        `shown` (≥ 10 beyond). A rate sweep's rows are at the compared rate (`basis`), plus each
        stack's own highest rate sustained below the knee (`basis` = "sustained rate")."""
        return self._verdict_tables[0].copy()

    def verdicts(self) -> pd.DataFrame:
        """Per workload × quantile × pair of stacks: `lower` (the lower stack, "" when the ratio's
        95 % interval holds 1), `ratio` (runner-up ÷ lower, or larger ÷ smaller), its interval,
        `n_a`, `n_b`, both stacks' values and intervals, `rate` (a sweep's compared rate)."""
        return self._verdict_tables[1].copy()

    def repeat_disagreements(self) -> pd.DataFrame:
        """Repeats of one workload × stack whose quantile intervals do not overlap."""
        return verdict_math.repeat_disagreements(self.verdict_latencies())

    def write_verdict_tables(self, out_dir: str | Path) -> list[Path]:
        """verdicts.parquet (with each verdict's text) and estimates.parquet, each row naming the
        `figure` it is of: what the report's headline shows and `hopscope run` prints."""
        out = Path(out_dir)
        written = []
        for name, df in (
            ("verdicts", verdict_math.with_text(self.verdicts())),
            ("estimates", self.estimates()),
        ):
            path = out / table_file(name)
            with atomic_file(path) as tmp:
                df.assign(figure=self.verdict_figure).to_parquet(tmp, index=False)
            written.append(path)
        return written

    def quality(self) -> dict:
        """Data-quality counts per stack × workload (key "stack/workload"), plus run-level ingest counts."""
        return json.loads(json.dumps(self._quality))

    @cached_property
    def _quality(self) -> dict:
        c = self._core
        sa, dl = c.sa, c.deliveries
        expected = {p: self.expected_hops(*p) for p in c.pairs}
        missing, missing_by_hop = quality.missing_expected(sa, c.pair_of_trace, c.pairs, expected)
        reach_cycle = np.zeros(sa.n_traces, np.int64)
        counts = sa.counts
        corr = np.bincount(sa.trace[c.skew.corrected], minlength=sa.n_traces)
        complete = (
            (counts["true_roots"] == 1) & (counts["orphan_spans"] == 0) & (missing == 0) & (reach_cycle == 0)
        )
        dl_pair = c.pair_of_trace[dl.trace]
        traces_with_delivery = np.zeros(sa.n_traces, bool)
        traces_with_delivery[dl.trace] = True
        e2e = self.e2e() if self.ledger is not None else None
        warm_events = (
            ledger_figures.warmup_events(self.ledger).groupby(["stack", "workload"]).size().to_dict()
        )
        out: dict = {"pairs": {}}
        for p, (stack, workload) in enumerate(c.pairs):
            sel = c.pair_of_trace == p
            entry = {
                "stack": stack,
                "workload": workload,
                "traces": int(sel.sum()),
                "complete_traces": int((complete & sel).sum()),
                "spans": int(np.sum(sel[sa.trace])),
                # contrib-instrumentation spans inside a hop (see fold.py): detail, not hops
                "library_spans_folded": int(counts["folded_library_spans"][sel].sum()),
                "orphan_spans": int(counts["orphan_spans"][sel].sum()),
                "duplicate_span_ids": int(counts["duplicate_span_ids"][sel].sum()),
                "negative_durations": int(counts["negative_durations"][sel].sum()),
                "traces_without_root": int(((counts["true_roots"] == 0) & sel).sum()),
                "traces_with_several_roots": int(((counts["true_roots"] > 1) & sel).sum()),
                "missing_expected_hops": int(missing[sel].sum()),
                "missing_expected_hops_by_hop": missing_by_hop.get((stack, workload), {}),
                "clock_skew_corrections": int(corr[sel].sum()),
                "deliveries": int((dl_pair == p).sum()),
                "deliveries_analysed": int((dl.valid & (dl_pair == p)).sum()),
                "deliveries_broken_path": int((c.broken & (dl_pair == p)).sum()),
                # warm-up events (ledger): in no figure; their traces' deliveries not analysed
                "warmup_events_excluded": warm_events.get((stack, workload), 0),
                "warmup_deliveries_excluded": int((c.warmup[dl.trace] & ~c.broken & (dl_pair == p)).sum()),
                "traces_without_delivery": int((sel & ~traces_with_delivery).sum()),
            }
            if e2e is not None:
                sub = e2e[(e2e["stack"] == stack) & (e2e["workload"] == workload)]
                entry["unattributed"] = quality.summary_ms(sub["unattributed_ms"].to_numpy(dtype=float))
                entry["deliveries_without_ledger_receipt"] = int(sub["ledger_e2e_ms"].isna().sum())
            out["pairs"][f"{stack}/{workload}"] = entry
        out["span_sources"] = quality.span_source_problems(self.manifest)
        out["ingest"] = {
            "malformed_records": int(sum((self.ingest_report.get("skipped") or {}).values())),
            "skipped": self.ingest_report.get("skipped") or {},
            "files": self.ingest_report.get("files"),
        }
        # string values over MAX_VALUE_BYTES cut on loading (kept, not dropped: counted here)
        out["load"] = {"values_truncated": dict(self.truncated), "max_value_chars": MAX_VALUE_BYTES}
        return out

    def quality_frame(self) -> pd.DataFrame:
        """quality() as a flat DataFrame, one row per stack × workload."""
        q = self.quality()
        rows = []
        for entry in q["pairs"].values():
            flat = {k: v for k, v in entry.items() if not isinstance(v, dict)}
            for k, v in entry.get("unattributed", {}).items():
                flat[f"unattributed_{k}"] = v
            flat["malformed_records"] = q["ingest"]["malformed_records"]
            flat["values_truncated"] = sum(q["load"]["values_truncated"].values())
            rows.append(flat)
        return pd.DataFrame(rows)

    def resources(self) -> pd.DataFrame:
        """Per phase × service of a `hopscope run`: CPU seconds and ms per event, peak RSS, host
        CPU, schedule lag, host-bound (`resources.COLUMNS`; empty for any other run)."""
        return resources_frame(
            _read_json(self.run_dir / EXPERIMENT, EXPERIMENT_SHAPE) if self.run_dir else {}
        )

    #: what write_outputs replaces: files of an earlier analysis this one does not write again
    #: (a pair's graph, the Jaeger-mode tables of an earlier --mode jaeger) are removed
    STALE_OUTPUTS = (GRAPH_FILES, table_file("jaeger_paths"), table_file("jaeger_stats"))

    def write_outputs(self, out_dir: str | Path | None = None, *, staged: bool = True) -> list[Path]:
        """Write hop_stats/e2e/tail_growth/verdicts/estimates Parquet, quality.json and one GraphML
        per pair. All or nothing: written into a folder of their own inside `out_dir`, then moved
        into place (a failure leaves the earlier analysis' files as they were). `staged=False`
        writes straight into `out_dir` (for a caller that stages itself)."""
        out = Path(out_dir) if out_dir is not None else self.run_dir
        if out is None:
            raise RunDirError("write_outputs needs out_dir when the run was not loaded from a directory")
        if staged:
            with staged_outputs(out, stale=self.STALE_OUTPUTS) as tmp:
                names = [p.name for p in self.write_outputs(tmp, staged=False)]
            return [out / name for name in names]
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, df in (
            ("hop_stats", self.hop_stats()),
            ("e2e", self.e2e()),
            ("e2e_summary", self.e2e_summary()),
            ("tail_growth", self.tail_growth()),
        ):
            path = out / table_file(name)
            df.to_parquet(path, index=False)
            written.append(path)
        written += self.write_verdict_tables(out)
        if self.mode == "jaeger":
            for name, df in (("jaeger_paths", self.jaeger_paths()), ("jaeger_stats", self.jaeger_stats())):
                path = out / table_file(name)
                df.to_parquet(path, index=False)
                written.append(path)
        path = out / QUALITY
        path.write_text(json.dumps(self.quality(), indent=2, sort_keys=True))
        written.append(path)
        for stack, workload in self.pairs():
            try:
                g = self.graph(stack, workload)
            except KeyError:
                continue
            path = out / graph_file(stack, workload)
            nx.write_graphml(g, path)
            written.append(path)
        return written


@contextlib.contextmanager
def damage_named(run_dir: Path) -> Iterator[None]:
    """A failure inside the block that is not already a RunDirError becomes one when RUN_DIR's
    spans.parquet or ledger.parquet turns out to hold damaged data (`span_file.damage`: a corrupt
    page that still decoded, invalid UTF-8, dictionary indices out of range), naming the file,
    column and row group; else it is left as it was (a bug, not the data). The check costs
    nothing unless the block fails."""
    try:
        yield
    except RunDirError:
        raise
    except Exception as exc:
        found = None
        try:
            path = Path(run_dir) / SPANS_PARQUET
            found = damage(str(path)) if run_file(path) is not None else None
            path = Path(run_dir) / LEDGER
            if not found and run_file(path) is not None:
                found = damage(str(path), columns=None)
        except Exception:  # the diagnosis must not hide the failure
            found = None
        if found:
            raise RunDirError(found) from exc
        raise


def _only_traces(cols: ParquetColumns, trace_ids: Iterable[str]) -> pa.Table | None:
    """The spans of these traces (any spelling's lower case too), or None when the file may hold
    foreign traces: a consumer's trace joins its producer's only when every trace is read."""
    if _may_hold_foreign(cols):
        return None
    wanted = pa.array(sorted({t for tid in trace_ids for t in (tid, tid.strip().lower())}), pa.string())
    names = [c for c in NEEDED_COLUMNS if c in cols.column_names]
    try:
        # the trace ids first, a row group at a time; the other columns only of the row groups
        # that hold a wanted trace (the maps and links are most of the file)
        file = cols._file
        parts = []
        for g in range(file.metadata.num_row_groups):
            ids = file.read_row_group(g, columns=["trace_id"]).column("trace_id")
            hit = pc.is_in(ids.cast(pa.string()), value_set=wanted)
            if pc.any(hit).as_py():
                group = file.read_row_group(g, columns=names)
                parts.append(group.filter(hit))
        return pa.concat_tables(parts) if parts else file.schema_arrow.empty_table().select(names)
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise RunDirError(f"{cols.path}: cannot be read ({exc})") from exc


def load(
    run_dir: str | Path,
    *,
    mode: str = "event",
    correct_skew: bool = True,
    label: str | None = None,
    mapping: Mapping | None = None,
    traces: Iterable[str] | None = None,
) -> Run:
    """Open a run directory (spans.parquet, manifest.json, ledger.parquet, ingest_report.json).

    `mode="jaeger"` adds Jaeger-mode critical paths per trace (`jaeger_paths()`,
    `jaeger_stats()`, written by `write_outputs`) beside the event-mode figures, which stay the
    attribution. Foreign traces (no `hopscope.*` attribute) get default hops, workloads and
    deliveries, their stack named `label` (default: the directory's name); `mapping`
    (`mapping.load_mapping`) overrides the defaults (`foreign.py`). A missing spans.parquet is `NoSpans`: ingest spans/ first (`hopscope ingest`,
    or `hopscope analyze`, which does it).

    `traces` (trace ids) reads only those traces' spans — what `Run.trace` needs of a large run,
    since every step but the statistics is per trace; a file that may hold foreign traces is
    read whole (their events join across traces)."""
    rd = Path(run_dir)
    if not rd.is_dir():
        raise RunDirError(f"{rd}: {'not a directory' if rd.exists() else 'no such directory'}")
    table: pa.Table | ParquetColumns = _read_spans(rd)
    if traces is not None:
        assert isinstance(table, ParquetColumns)
        only = _only_traces(table, traces)
        table = only if only is not None else table  # (an empty table is falsy)
    return Run(
        table,
        manifest=_read_json(rd / MANIFEST, MANIFEST_SHAPE),
        ledger=read_ledger(rd),
        ingest_report=_read_json(rd / INGEST_REPORT, INGEST_REPORT_SHAPE),
        run_dir=rd,
        correct_skew=correct_skew,
        mode=mode,
        label=label,
        mapping=mapping,
    )
