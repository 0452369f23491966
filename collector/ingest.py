"""`hopscope ingest`: span files / folders → RUN_DIR/spans.parquet + ingest_report.json."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from .errors import MAX_MESSAGES, MalformedInput, NoUsableSpans, Problems, UnknownFormat
from .readers import read_file
from .schema import SPAN_SCHEMA

SPANS_FILE = "spans.parquet"
REPORT_FILE = "ingest_report.json"
# Files a run directory holds next to spans that are not spans.
_NOT_SPANS = {SPANS_FILE, REPORT_FILE, "manifest.json", "truth.json", "quality.json"}


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
            "ignored_files": self.ignored_files[:MAX_MESSAGES],
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


def read_all(
    files: Sequence[Path], problems: Problems, *, fmt: str | None = None, console: Console | None = None
) -> pa.Table:
    """Read every file under a progress bar (bytes); files that cannot be read at all are counted."""
    tables: list[pa.Table] = []
    total = sum(f.stat().st_size for f in files)
    with Progress(
        TextColumn("[bold]ingest[/] {task.fields[name]}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("ingest", total=total, name="")
        for f in files:
            progress.update(task, name=f.name)
            try:
                t = read_file(f, problems, fmt)
            except OSError as e:
                problems.skip(str(f), None, None, f"cannot read: {e}", "unreadable_file")
                t = None
            except UnknownFormat as e:
                if problems.strict:
                    raise MalformedInput(str(f), None, None, str(e), "unknown_format") from None
                problems.skip(str(f), None, None, str(e), "unknown_format")
                t = None
            if t is not None and t.num_rows:
                tables.append(t)
            progress.advance(task, f.stat().st_size)
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
) -> IngestResult:
    """Read spans from files/folders, write `out_dir/spans.parquet` and `out_dir/ingest_report.json`.

    Bad lines/records/spans are skipped and counted (or raised as MalformedInput when
    `strict`). Raises NoUsableSpans when there is no input file or no usable span.
    """
    t0 = time.perf_counter()
    problems = Problems(strict=strict)
    ignored: list[str] = []
    files = expand(sources, ignored)
    if not files:
        raise NoUsableSpans(f"no span files in {', '.join(str(s) for s in sources)}")
    table = read_all(files, problems, fmt=fmt, console=console)
    return write_outputs(table, problems, Path(out_dir), files=len(files), t0=t0, ignored=ignored)


def write_outputs(
    table: pa.Table, problems: Problems, out_dir: Path, *, files: int, t0: float, ignored: Sequence[str] = ()
) -> IngestResult:
    """Write spans.parquet (zstd) and ingest_report.json; NoUsableSpans (after writing the report) if empty."""
    result = IngestResult(files, table.num_rows, 0.0, out_dir, problems, list(ignored))
    out_dir.mkdir(parents=True, exist_ok=True)
    if table.num_rows == 0:
        (out_dir / REPORT_FILE).write_text(json.dumps(result.report(), indent=2))
        detail = f"; skipped {dict(problems.skipped)}" if problems.skipped else ""
        raise NoUsableSpans(f"no usable span in {files} input(s){detail} (see {out_dir / REPORT_FILE})")
    pq.write_table(table, out_dir / SPANS_FILE, compression="zstd")
    result.seconds = time.perf_counter() - t0
    (out_dir / REPORT_FILE).write_text(json.dumps(result.report(), indent=2))
    return result
