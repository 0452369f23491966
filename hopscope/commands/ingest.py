"""CLI commands of this folder, registered on the main `hopscope` app."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import typer
from rich.console import Console
from rich.table import Table

from hopscope.collector.errors import DEFAULT_LIMITS, Limits, Problems
from hopscope.collector.ingest import IngestResult, ingest, write_outputs
from hopscope.collector.readers import FORMATS
from hopscope.commands.errors import writable_dir
from hopscope.commands.json_output import JsonOption, print_json
from hopscope.core.rundir import INGEST_REPORT, SPANS_PARQUET
from hopscope.core.schema import SPAN_SCHEMA

_console = Console()
_err = Console(stderr=True)


def _parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text.strip())
    if not m:
        raise typer.BadParameter(f"{text!r}: use a number and one of ms, s, m, h, d (e.g. 30m, 1h)")
    value, unit = float(m.group(1)), m.group(2)
    return timedelta(
        **{{"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: value}
    )


def _summary(result: IngestResult, title: str) -> None:
    t = Table(title=title, show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("files", str(result.files))
    t.add_row("spans", f"{result.spans:,}")
    for kind, n in sorted(result.problems.skipped.items()):
        t.add_row(f"skipped: {kind}", f"{n:,}")
    for kind, n in sorted(result.problems.adjusted.items()):
        t.add_row(f"kept, repaired: {kind}", f"{n:,}")
    for reader, n in sorted(result.problems.readers.items()):
        t.add_row(f"read by: {reader}", f"{n:,} file(s)")
    t.add_row("seconds", f"{result.seconds:.2f}")
    t.add_row("spans/s", f"{result.spans_per_second:,.0f}")
    _console.print(t)
    for why in result.problems.declined[:5]:
        _console.print(f"[yellow]slower path:[/] {why}")
    _console.print(f"wrote {result.out_dir / SPANS_PARQUET} and {result.out_dir / INGEST_REPORT}")


#: `--limit NAME=VALUE`, repeatable: the readers' bounds (collector/README.md, Limits)
LimitOption = Annotated[
    list[str] | None,
    typer.Option(
        "--limit",
        help="raise or lower a span reader limit, NAME=VALUE, repeatable: "
        + ", ".join(f"{k} (default {v:,})" for k, v in DEFAULT_LIMITS.as_dict().items())
        + "; sizes take K/M/G",
    ),
]


def parse_limits(settings: list[str] | None) -> Limits:
    try:
        return DEFAULT_LIMITS.with_overrides(settings or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--limit") from None


def register(app: typer.Typer) -> None:
    """Add this folder's commands to the main app."""

    @app.command("ingest")
    def ingest_cmd(
        src: Annotated[list[Path], typer.Argument(help="span files or folders (recursed)")],
        out: Annotated[Path, typer.Option("--out", help=f"run directory to write {SPANS_PARQUET} into")],
        strict: Annotated[bool, typer.Option("--strict", help="stop at the first bad line/span")] = False,
        fmt: Annotated[
            str | None, typer.Option("--format", help=f"skip detection: one of {', '.join(FORMATS)}")
        ] = None,
        limit: LimitOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Read collector files / Jaeger / Tempo / Zipkin JSON into RUN_DIR/spans.parquet."""
        if fmt is not None and fmt not in FORMATS:
            raise typer.BadParameter(f"{fmt!r}: choose one of {', '.join(FORMATS)}", param_hint="--format")
        limits = parse_limits(limit)
        writable_dir(out)
        # IngestError: exit 1 (hopscope.commands.errors)
        result = ingest(src, out, strict=strict, fmt=fmt, limits=limits)  # progress on stderr
        if as_json:
            print_json({"run_dir": out, "spans_parquet": out / SPANS_PARQUET, **result.report()})
        else:
            _summary(result, "ingest")

    @app.command("fetch-traces")
    def fetch_traces_cmd(
        out: Annotated[Path, typer.Option("--out", help=f"run directory to write {SPANS_PARQUET} into")],
        jaeger: Annotated[
            str | None, typer.Option("--jaeger", help="Jaeger v2 query base URL, e.g. http://127.0.0.1:16686")
        ] = None,
        tempo: Annotated[
            str | None, typer.Option("--tempo", help="Tempo base URL, e.g. http://127.0.0.1:3200")
        ] = None,
        service: Annotated[
            list[str] | None, typer.Option("--service", help="service name (Jaeger; repeatable)")
        ] = None,
        query: Annotated[str | None, typer.Option("--query", help="TraceQL query (Tempo)")] = None,
        operation: Annotated[
            str | None,
            typer.Option("--operation", help="operation (span name) of the searched service (Jaeger)"),
        ] = None,
        trace_id: Annotated[
            list[str] | None, typer.Option("--trace-id", help="fetch these traces by id")
        ] = None,
        lookback: Annotated[
            str, typer.Option("--lookback", help="search window ending now, e.g. 15m, 1h")
        ] = "1h",
        limit: Annotated[
            int, typer.Option("--limit", min=1, help="traces per search page (the window is paged through)")
        ] = 100,
        max_traces: Annotated[
            int,
            typer.Option(
                "--max-traces", min=1, help="stop after this many traces per search (the most recent)"
            ),
        ] = 10_000,
        strict: Annotated[bool, typer.Option("--strict")] = False,
    ) -> None:
        """Fetch traces from a running Jaeger (api_v3) or Tempo into RUN_DIR/spans.parquet."""
        from hopscope.collector.readers import live

        if (jaeger is None) == (tempo is None):
            raise typer.BadParameter("give exactly one of --jaeger or --tempo")
        if operation and not jaeger:
            raise typer.BadParameter(
                "--operation searches Jaeger; for Tempo put it in --query", param_hint="--operation"
            )
        window = _parse_duration(lookback)
        writable_dir(out)
        problems = Problems(strict=strict)
        t0 = time.perf_counter()
        tables: list[pa.Table] = []
        inputs = 0
        # IngestError: exit 1 (hopscope.commands.errors)
        for tid in trace_id or []:
            got = (
                live.jaeger_get_trace(jaeger, tid, problems)
                if jaeger
                else live.tempo_get_trace(tempo, tid, problems)
            )
            tables.append(got.table)
            inputs += 1
        err = Console(stderr=True)
        capped: list[str] = []

        def progress(what: str) -> Callable[[int, int, datetime], None]:
            def on_page(page: int, traces: int, until: datetime) -> None:
                err.print(
                    f"{what}: page {page}, {traces:,} traces (window end {until:%H:%M:%S})", markup=False
                )

            return on_page

        if jaeger:
            for svc in service or ([] if trace_id else live.jaeger_services(jaeger)):
                paged = live.jaeger_find_traces_paged(
                    jaeger, svc, problems, lookback=window, operation=operation, page_size=limit,
                    max_traces=max_traces, on_page=progress(svc),
                )  # fmt: skip
                tables.append(paged.fetched.table)
                inputs += paged.pages
                if paged.capped:
                    capped.append(svc)
        elif query or not trace_id:
            paged = live.tempo_search_paged(
                tempo, problems, q=query or "{}", lookback=window, page_size=limit, max_traces=max_traces,
                on_page=progress("tempo"),
            )  # fmt: skip
            tables.append(paged.fetched.table)
            inputs += len(paged.fetched.urls)
            if paged.capped:
                capped.append(query or "{}")
        for what in capped:
            err.print(
                f"{what}: stopped at --max-traces {max_traces:,}; older traces in the window were not read",
                markup=False,
            )
        table = pa.concat_tables(tables) if tables else SPAN_SCHEMA.empty_table()
        if tables:
            # Overlapping searches (one per service) return the same trace more than once.
            table = _dedupe(table)
        result = write_outputs(table, problems, out, files=inputs, t0=t0)
        _summary(result, "fetch-traces")


def _dedupe(table: pa.Table) -> pa.Table:
    keys = pc.binary_join_element_wise(table["trace_id"], table["span_id"], "").to_numpy(zero_copy_only=False)
    _, first = np.unique(keys, return_index=True)
    return table.take(pa.array(np.sort(first)))
