"""`hopscope ingest`: span files / folders → RUN_DIR/spans.parquet + ingest_report.json;
`ingest_run`: a run directory's own spans/ when its spans.parquet is missing."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from hopscope.core.rundir import INGEST_REPORT, MANIFEST, QUALITY, SPANS_DIR, SPANS_PARQUET, TRUTH
from hopscope.core.schema import SPAN_PARQUET_OPTIONS, SPAN_SCHEMA

from .errors import MAX_MESSAGES, Limits, MalformedInput, NoUsableSpans, Problems, UnknownFormat
from .readers import read_file
from .readers.otlp_arrow import PARSE_THREADS

# Files a run directory holds next to spans that are not spans.
_NOT_SPANS = {SPANS_PARQUET, INGEST_REPORT, MANIFEST, TRUTH, QUALITY}


@dataclass
class IngestResult:
    files: int
    spans: int
    seconds: float
    out_dir: Path
    problems: Problems = field(default_factory=Problems)
    #: files in the given folders that were not read (no span suffix), first MAX_MESSAGES
    ignored_files: list[str] = field(default_factory=list)

    @property
    def spans_per_second(self) -> float:
        return self.spans / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> dict:
        return {
            "files": self.files,
            "spans": self.spans,
            "skipped": dict(sorted(self.problems.skipped.items())),
            "adjusted": dict(sorted(self.problems.adjusted.items())),
            "errors": list(self.problems.messages),
            "readers": dict(sorted(self.problems.readers.items())),
            "fast_path_declined": list(self.problems.declined),
            "ignored_files": self.ignored_files[:MAX_MESSAGES],
            "failed_files": list(self.problems.failed),
            "skipped_by_file": {
                src: dict(sorted(counts.items())) for src, counts in sorted(self.problems.by_file.items())
            },
            "limits": self.problems.limits.as_dict(),
        }


#: Suffixes a folder's span files have (the collector's rotated files keep the suffix of `path`).
SPAN_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson", ".pb", ".binpb", ".proto", ".zst", ".zstd"})


def _is_span_file(p: Path) -> bool:
    return (
        p.is_file()
        and not p.name.startswith(".")
        and p.name not in _NOT_SPANS
        and p.suffix.lower() in SPAN_SUFFIXES
    )


def expand(sources: Sequence[Path | str], ignored: list[str] | None = None) -> list[Path]:
    """Files of the given paths, folders recursed, each folder's files sorted by path.

    In a folder only files with a span suffix are taken; the others are listed in `ignored`.
    A file named explicitly is always read.
    """
    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if _is_span_file(f):
                    files.append(f)
                elif f.is_file() and ignored is not None:
                    ignored.append(str(f))
        elif p.is_file():
            files.append(p)
        else:
            raise NoUsableSpans(f"{p}: no such file or folder")
    return files


#: files read at once when a folder holds several (this machine has 2 cores; pyarrow.json and the
#: Arrow kernels release the GIL, so threads overlap one file's parsing with another's conversion)
READ_WORKERS = min(2, os.cpu_count() or 1)


def _read_one(
    f: Path, strict: bool, fmt: str | None, parse_threads: bool = True, limits: Limits | None = None
) -> tuple[pa.Table | None, Problems]:
    """One file with its own problem ledger (merged in file order by the caller).

    Nothing a file holds stops the run: a file that cannot be read at all is counted as
    failed (one line naming it) and the other files are still read. Only strict mode raises.
    """
    PARSE_THREADS.set(parse_threads)
    problems = Problems(strict=strict, limits=limits or Limits())
    t = None
    try:
        t = read_file(f, problems, fmt)
    except MalformedInput:
        raise
    except OSError as e:
        problems.fail_file(str(f), f"cannot read: {e}", "unreadable_file")
    except UnknownFormat as e:
        if strict:
            raise MalformedInput(str(f), None, None, str(e), "unknown_format") from None
        problems.fail_file(str(f), str(e), "unknown_format")
    except MemoryError:
        problems.fail_file(str(f), "out of memory while reading it (see Limits)", "too_large")
    except Exception as e:  # a reader bug: this file is counted as failed, the run goes on
        problems.fail_file(str(f), f"reader error {type(e).__name__}: {e}", "unexpected_error")
    return (t if t is not None and t.num_rows else None), problems


def iter_tables(
    files: Sequence[Path], problems: Problems, *, fmt: str | None = None, console: Console | None = None
) -> Iterator[pa.Table]:
    """Each file's spans in file order, under a progress bar (bytes); unreadable files are counted.

    With several files, READ_WORKERS of them are read at once; results, problem counts and
    messages still come in file order, and in strict mode the first problem in file order is raised.
    """
    sizes = [f.stat().st_size for f in files]
    workers = READ_WORKERS if len(files) > 1 else 1
    with (
        Progress(
            TextColumn("[bold]ingest[/] {task.fields[name]}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
        ) as progress,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool,
    ):
        task = progress.add_task("ingest", total=sum(sizes), name="")
        # at most `workers` files in flight: memory stays at a few files' worth
        pending: deque[Future] = deque()
        queue = iter(range(len(files)))
        for i in islice(queue, workers):
            pending.append(
                pool.submit(_read_one, files[i], problems.strict, fmt, workers == 1, problems.limits)
            )
        done = 0
        try:
            while pending:
                progress.update(task, name=files[done].name)
                table, got = pending.popleft().result()
                for i in islice(queue, 1):
                    # the last file, alone, may use every core again
                    alone = workers == 1 or i == len(files) - 1
                    pending.append(
                        pool.submit(_read_one, files[i], problems.strict, fmt, alone, problems.limits)
                    )
                problems.merge(got)
                progress.advance(task, sizes[done])
                done += 1
                if table is not None:
                    yield table
        finally:
            for fut in pending:
                fut.cancel()


def read_all(
    files: Sequence[Path], problems: Problems, *, fmt: str | None = None, console: Console | None = None
) -> pa.Table:
    """Every file's spans as one table (see iter_tables)."""
    tables = list(iter_tables(files, problems, fmt=fmt, console=console))
    if not tables:
        return SPAN_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def ingest(
    sources: Sequence[Path | str],
    out_dir: Path,
    *,
    strict: bool = False,
    fmt: str | None = None,
    console: Console | None = None,
    limits: Limits | None = None,
) -> IngestResult:
    """Read spans from files/folders, write `out_dir/SPANS_PARQUET` and `out_dir/INGEST_REPORT`.

    Bad lines/records/spans are skipped and counted (or raised as MalformedInput when
    `strict`); a file that cannot be read at all is counted as failed and the others are
    still read. `limits` bounds what one file may make the readers allocate (see Limits;
    None = the defaults). Raises NoUsableSpans when there is no input file or no usable span.
    Each file's spans are written to Parquet as soon as they are read (row groups in file
    order) while the next files are parsed, into a temporary file that replaces SPANS_PARQUET
    only when the whole run succeeded (see _finish): a failed ingest leaves the old pair as it was.
    """
    t0 = time.perf_counter()
    problems = Problems(strict=strict, limits=limits or Limits())
    ignored: list[str] = []
    files = expand(sources, ignored)
    if not files:
        raise NoUsableSpans(f"no span files in {', '.join(str(s) for s in sources)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = _temp_path(out_dir, SPANS_PARQUET)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for table in iter_tables(files, problems, fmt=fmt, console=console):
            if writer is None:
                writer = pq.ParquetWriter(partial, SPAN_SCHEMA, **SPAN_PARQUET_OPTIONS)
            writer.write_table(table)
            rows += table.num_rows
        if writer is not None:
            writer.close()
            writer = None
    finally:
        if writer is not None:
            writer.close()
        if rows == 0 or sys.exc_info()[0] is not None:
            partial.unlink(missing_ok=True)
    return _finish(
        rows, problems, out_dir, partial if rows else None, files=len(files), t0=t0, ignored=ignored
    )


def _temp_path(out_dir: Path, name: str) -> Path:
    """A fresh hidden temporary file beside `name` (same directory, so the rename is atomic;
    hidden, so a folder ingest of `out_dir` never reads it)."""
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _finish(
    rows: int,
    problems: Problems,
    out_dir: Path,
    written: Path | None,
    *,
    files: int,
    t0: float,
    ignored: Sequence[str] = (),
) -> IngestResult:
    """Put the new spans.parquet (from `written`) and ingest_report.json in place as one pair;
    NoUsableSpans (after writing the report) if there is no span.

    Both are written to temporary files in `out_dir` first and renamed over the old ones. The
    old report goes first, the new one last, so no reader ever sees a report beside a
    spans.parquet it does not describe: at worst (a crash between the renames) the new
    spans.parquet without a report. With no span the old spans.parquet is removed: the new
    report says 0 spans.
    """
    result = IngestResult(files, rows, 0.0, out_dir, problems, list(ignored))
    report_tmp = _temp_path(out_dir, INGEST_REPORT)
    try:
        result.seconds = time.perf_counter() - t0 if rows else 0.0
        report_tmp.write_text(json.dumps(result.report(), indent=2))
        (out_dir / INGEST_REPORT).unlink(missing_ok=True)
        if written is not None and rows:
            os.replace(written, out_dir / SPANS_PARQUET)
        else:
            (out_dir / SPANS_PARQUET).unlink(missing_ok=True)
        os.replace(report_tmp, out_dir / INGEST_REPORT)
    finally:
        report_tmp.unlink(missing_ok=True)
        if written is not None:
            written.unlink(missing_ok=True)
    if rows == 0:
        detail = f"; skipped {dict(problems.skipped)}" if problems.skipped else ""
        raise NoUsableSpans(f"no usable span in {files} input(s){detail} (see {out_dir / INGEST_REPORT})")
    return result


def write_outputs(
    table: pa.Table, problems: Problems, out_dir: Path, *, files: int, t0: float, ignored: Sequence[str] = ()
) -> IngestResult:
    """Write spans.parquet (zstd) and ingest_report.json as one pair (see _finish); NoUsableSpans
    (after writing the report) if empty."""
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = None
    if table.num_rows:
        partial = _temp_path(out_dir, SPANS_PARQUET)
        try:
            pq.write_table(table, partial, **SPAN_PARQUET_OPTIONS)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return _finish(table.num_rows, problems, out_dir, partial, files=files, t0=t0, ignored=ignored)


def ingest_run(
    run_dir: Path, *, strict: bool = False, console: Console | None = None, limits: Limits | None = None
) -> IngestResult | None:
    """Ingest RUN_DIR's own span files (SPANS_DIR/) into RUN_DIR/SPANS_PARQUET when that is
    missing: what `hopscope analyze` (and an experiment, before its report) does first. None when
    there is nothing to do: SPANS_PARQUET is there already, or no span file is (the analysis
    then says what is missing)."""
    run_dir = Path(run_dir)
    spans = run_dir / SPANS_DIR
    if (run_dir / SPANS_PARQUET).exists() or not spans.is_dir():
        return None
    if not any(p.is_file() for p in spans.rglob("*")):
        return None
    if console is not None:
        console.print(f"[bold]ingest[/] {spans} → {run_dir / SPANS_PARQUET}", soft_wrap=True)
    return ingest([spans], run_dir, strict=strict, console=console, limits=limits)
