"""The Postgres results tables the Attribution dashboard reads, and `write_results` that fills them.

One row set per `run_id`: writing a run again replaces its rows in one
transaction, so the tables never hold a half-written or doubled run.
`hopscope analyze --to-postgres DSN` calls `write_results(run, dsn, run_id)`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import networkx as nx
import numpy as np
import pandas as pd
import psycopg
import psycopg.sql

from hopscope.deploy.services.postgres import READER


class ResultsError(ValueError):
    """Analysis output that cannot be written: names the table, the row and the field."""


class AnalysisRun(Protocol):
    """What `write_results` needs of `hopscope.analysis.load(RUN_DIR)`."""

    def hop_stats(self) -> pd.DataFrame: ...
    def e2e(self) -> pd.DataFrame: ...
    def tail_growth(self) -> pd.DataFrame: ...
    def quality(self) -> Any: ...
    def pairs(self) -> list[tuple[str, str]]: ...
    def graph(self, stack: str, workload: str) -> nx.DiGraph: ...


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    #: Column of the analysis DataFrame it comes from (None: filled by write_results).
    source: str | None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    def ddl(self) -> str:
        cols = ",\n  ".join(f"{c.name} {c.sql_type}" for c in self.columns)
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols},\n  PRIMARY KEY ({', '.join(self.key)})\n)"
        )

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, sql_type: str, source: str | None = "same") -> Column:
    return Column(name, sql_type, name if source == "same" else source)


_KEY = (_c("run_id", "text NOT NULL", None), _c("stack", "text NOT NULL"), _c("workload", "text NOT NULL"))
_QUANTS = tuple(_c(n, "double precision") for n in ("p50_ms", "p90_ms", "p99_ms", "p999_ms"))

RUNS = Table(
    "hopscope_runs",
    (
        _c("run_id", "text NOT NULL", None),
        _c("written_at", "timestamptz NOT NULL DEFAULT now()", None),
        _c("run_dir", "text", None),
        _c("stacks", "text[] NOT NULL", None),
        _c("workloads", "text[] NOT NULL", None),
        _c("quality", "jsonb", None),
    ),
    ("run_id",),
)
HOP_STATS = Table(
    "hopscope_hop_stats",
    (
        *_KEY,
        _c("hop", "text NOT NULL"),
        _c("hop_order", "integer NOT NULL", "order"),
        _c("count", "bigint NOT NULL"),
        _c("mean_ms", "double precision"),
        _c("std_ms", "double precision"),
        *_QUANTS,
        _c("max_ms", "double precision"),
        _c("var_share", "double precision"),
        _c("tail_share_p99", "double precision"),
        _c("tail_share_p999", "double precision"),
        _c("crit_share", "double precision"),
    ),
    ("run_id", "stack", "workload", "hop"),
)
TAIL_GROWTH = Table(
    "hopscope_tail_growth",
    (
        *_KEY,
        _c("hop", "text NOT NULL"),
        _c("hop_order", "integer NOT NULL", "order"),
        _c("p50_ms", "double precision"),
        _c("p99_ms", "double precision"),
        _c("p999_ms", "double precision"),
    ),
    ("run_id", "stack", "workload", "hop"),
)
E2E_SUMMARY = Table(
    "hopscope_e2e_summary",
    (
        *_KEY,
        _c("count", "bigint NOT NULL", None),
        _c("mean_ms", "double precision", None),
        *(Column(c.name, c.sql_type, None) for c in _QUANTS),
        _c("max_ms", "double precision", None),
    ),
    ("run_id", "stack", "workload"),
)
#: The analysis' hop graph (`run.graph(stack, workload)`): checkpoints as nodes, each hop the
#: edge between them: the node graph of a finished run (the live service map, services as
#: nodes, is the Hops dashboard's).
HOP_GRAPH = Table(
    "hopscope_hop_graph",
    (
        *_KEY,
        _c("hop", "text NOT NULL"),
        _c("source", "text NOT NULL"),
        _c("target", "text NOT NULL"),
        _c("p50_ms", "double precision"),
        _c("p99_ms", "double precision"),
        _c("crit_share", "double precision"),
    ),
    ("run_id", "stack", "workload", "hop"),
)
TABLES: tuple[Table, ...] = (RUNS, HOP_STATS, TAIL_GROWTH, E2E_SUMMARY, HOP_GRAPH)


def create_tables(conn: psycopg.Connection) -> None:
    for table in TABLES:
        conn.execute(table.ddl())
    # The read-only role `hopscope up` makes for Grafana reads these tables and nothing else,
    # so each is granted here, where it is made (an external server without the role: skipped).
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone():
        for table in TABLES:
            conn.execute(
                psycopg.sql.SQL("GRANT SELECT ON {} TO {}").format(
                    psycopg.sql.Identifier(table.name), psycopg.sql.Identifier(READER)
                )
            )


def write_results(run: AnalysisRun, dsn: str, run_id: str, run_dir: str | None = None) -> dict[str, int]:
    """Replace `run_id`'s rows in every results table; returns rows written per table."""
    if not run_id:
        raise ResultsError("write_results: run_id is empty")
    hop_rows = _rows(HOP_STATS, run.hop_stats(), run_id, "hop_stats()")
    growth_rows = _rows(TAIL_GROWTH, run.tail_growth(), run_id, "tail_growth()")
    e2e_rows = e2e_summary(run.e2e(), run_id)
    graph_rows = _rows(HOP_GRAPH, hop_graph_edges(run), run_id, "graph()")
    stacks = sorted({r[1] for r in [*hop_rows, *e2e_rows]})
    workloads = sorted({r[2] for r in [*hop_rows, *e2e_rows]})
    run_row = (run_id, run_dir, stacks, workloads, json.dumps(_jsonable(run.quality()), allow_nan=False))
    written: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, conn.transaction():
        create_tables(conn)
        for table in reversed(TABLES):
            conn.execute(f"DELETE FROM {table.name} WHERE run_id = %s", (run_id,))
        conn.execute(
            "INSERT INTO hopscope_runs (run_id, run_dir, stacks, workloads, quality) VALUES (%s, %s, %s, %s, %s)",
            run_row,
        )
        written[RUNS.name] = 1
        for table, rows in (
            (HOP_STATS, hop_rows),
            (TAIL_GROWTH, growth_rows),
            (E2E_SUMMARY, e2e_rows),
            (HOP_GRAPH, graph_rows),
        ):
            _insert(conn, table, rows)
            written[table.name] = len(rows)
    return written


def hop_graph_edges(run: AnalysisRun) -> pd.DataFrame:
    """One row per hop edge of every stack × workload's hop graph."""
    rows = []
    for stack, workload in run.pairs():
        try:
            g = run.graph(stack, workload)
        except KeyError:  # a pair with spans but no analysed delivery has no graph
            continue
        for source, target, attrs in g.edges(data=True):
            rows.append(
                {
                    "stack": stack,
                    "workload": workload,
                    "hop": attrs["hop"],
                    "source": source,
                    "target": target,
                    **{k: attrs.get(k) for k in ("p50_ms", "p99_ms", "crit_share")},
                }
            )
    columns = ["stack", "workload", "hop", "source", "target", "p50_ms", "p99_ms", "crit_share"]
    return pd.DataFrame(rows, columns=columns)


def _insert(conn: psycopg.Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    names = table.column_names
    marks = ", ".join(["%s"] * len(names))
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", rows)


def _rows(table: Table, df: pd.DataFrame, run_id: str, what: str) -> list[tuple[Any, ...]]:
    sources = [c.source for c in table.columns if c.source is not None]
    missing = [s for s in sources if s not in df.columns]
    if missing:
        raise ResultsError(f"{table.name}: run.{what} lacks column(s) {missing} (has {list(df.columns)})")
    out: list[tuple[Any, ...]] = []
    for i, rec in enumerate(df[sources].itertuples(index=False, name=None)):
        values = [_value(table, c, v, i, what) for c, v in zip(sources, rec, strict=True)]
        out.append((run_id, *values))
    return out


_NOT_NULL = {"stack", "workload", "hop", "order", "count"}


def _value(table: Table, field: str, value: Any, row: int, what: str) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        if field in _NOT_NULL:
            raise ResultsError(f"{table.name}: run.{what} row {row}: field {field!r} is missing")
        return None  # a statistic that is undefined (e.g. a share when Var(e2e) = 0) stays NULL
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isinf(value):
        raise ResultsError(f"{table.name}: run.{what} row {row}: field {field!r} is infinite")
    return value


def e2e_summary(e2e: pd.DataFrame, run_id: str) -> list[tuple[Any, ...]]:
    """count/mean/p50/p90/p99/p99.9/max of end-to-end latency per stack × workload.

    Accepts an `e2e_ms` or an `e2e_ns` column; quantiles are numpy's default
    (linear) ones, the same as the analysis's hop statistics.
    """
    if "e2e_ms" in e2e.columns:
        ms = e2e["e2e_ms"].astype("float64")
    elif "e2e_ns" in e2e.columns:
        ms = e2e["e2e_ns"].astype("float64") / 1e6
    else:
        raise ResultsError(
            f"hopscope_e2e_summary: run.e2e() has no e2e_ms or e2e_ns column (has {list(e2e.columns)})"
        )
    for key in ("stack", "workload"):
        if key not in e2e.columns:
            raise ResultsError(f"hopscope_e2e_summary: run.e2e() lacks column {key!r}")
    bad = ms.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ResultsError(
            f"hopscope_e2e_summary: run.e2e() row {row}: e2e latency is missing ({int(bad.sum())} rows)"
        )
    frame = pd.DataFrame(
        {"stack": e2e["stack"].astype(str), "workload": e2e["workload"].astype(str), "ms": ms}
    )
    rows: list[tuple[Any, ...]] = []
    for (stack, workload), group in frame.groupby(["stack", "workload"], sort=True):
        v = group["ms"].to_numpy()
        q = np.quantile(v, [0.5, 0.9, 0.99, 0.999])
        rows.append((run_id, stack, workload, len(v), float(v.mean()), *map(float, q), float(v.max())))
    return rows


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    elif hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
