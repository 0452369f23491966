"""What a distributed analysis reads: a run directory (its spans.parquet, manifest, ledger) or
a glob of span Parquet files, on local disk or any filesystem fsspec opens (s3://, gs://,
file://, …), cut into pieces of whole row groups that workers read themselves.

Only footers are read here (row counts, schemas): the client never holds spans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from hopscope.core.rundir import INGEST_REPORT, LEDGER, MANIFEST, SPANS_DIR, SPANS_PARQUET, RunDirError

from ..span_file import check_span_schema

#: columns every span file must have (the rest of the span schema may be missing: nulls)
REQUIRED_COLUMNS = ("trace_id", "span_id", "parent_span_id", "start_ns", "end_ns")
_GLOB_CHARS = "*?["


class SourceError(RunDirError):
    """The input cannot be analysed: nothing matches, a file is no span table, a path is unreachable."""


@dataclass(frozen=True)
class Piece:
    """Whole row groups of one file: what one shuffle task reads."""

    url: str
    row_groups: tuple[int, ...]
    rows: int
    may_hold_foreign: bool  # some span has no stack: its traces may join others through links


@dataclass
class SpanSource:
    """The files of one analysis and the run files beside them (a run directory's)."""

    description: str
    files: list[str]  # full URLs (protocol://path; plain paths for local files)
    storage_options: dict[str, Any] = field(default_factory=dict)
    run_url: str | None = None  # the run directory (manifest, ledger) when the input is one
    pieces: list[Piece] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    def open(self, url: str, mode: str = "rb") -> Any:
        return fsspec.open(url, mode, **self.storage_options).open()

    def run_file(self, name: str) -> str | None:
        """URL of a run file beside the spans (manifest.json, ledger.parquet …) if it exists."""
        if self.run_url is None:
            return None
        fs, path = fsspec.core.url_to_fs(self.run_url, **self.storage_options)
        url = _join(self.run_url, name)
        return url if fs.isfile(f"{path.rstrip('/')}/{name}") else None

    def read_json(self, name: str) -> dict:
        url = self.run_file(name)
        if url is None:
            return {}
        try:
            with self.open(url) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise SourceError(f"{url}: cannot read as JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise SourceError(f"{url}: expected a JSON object, found {type(data).__name__}")
        return data


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def _with_protocol(fs: fsspec.AbstractFileSystem, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def _may_hold_foreign(meta: pq.FileMetaData, schema: pa.Schema, row_groups: tuple[int, ...]) -> bool:
    """Some span of these row groups may have no stack (from the statistics; True when unknown)."""
    if "stack" not in schema.names:
        return True
    leaves = meta.schema
    at = next((i for i in range(len(leaves)) if leaves.column(i).path == "stack"), None)
    if at is None:
        return True
    for g in row_groups:
        stats = meta.row_group(g).column(at).statistics
        if stats is None or not stats.has_null_count or stats.null_count:
            return True
    return False


def resolve(
    source: str, storage_options: dict[str, Any] | None = None, piece_rows: int = 2_000_000
) -> SpanSource:
    """The files and pieces of SOURCE (a run directory, a span Parquet file or a glob of them).
    A SourceError names what is wrong: nothing there, nothing matched, a file that is no span table."""
    options = dict(storage_options or {})
    try:
        fs, path = fsspec.core.url_to_fs(source, **options)
    except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs
        raise SourceError(f"{source}: cannot open this filesystem ({exc})") from exc
    run_url = None
    try:
        if any(c in path for c in _GLOB_CHARS):
            paths = sorted(p for p in fs.glob(path) if fs.isfile(p))
            if not paths:
                raise SourceError(f"{source}: no file matches")
        elif fs.isdir(path):
            run_url = _with_protocol(fs, path) if "://" in source else source
            spans = f"{path.rstrip('/')}/{SPANS_PARQUET}"
            if not fs.isfile(spans):
                raise SourceError(
                    f"{source}: no {SPANS_PARQUET} (ingest {SPANS_DIR}/ first: `hopscope ingest`; "
                    "or give a glob of span Parquet files)"
                )
            paths = [spans]
        elif fs.isfile(path):
            paths = [path]
        else:
            raise SourceError(f"{source}: no such file or directory")
    except SourceError:
        raise
    except (OSError, ValueError) as exc:
        raise SourceError(f"{source}: cannot be listed ({exc})") from exc
    files = [_with_protocol(fs, p) for p in paths]
    out = SpanSource(source, files, options, run_url)
    for url, p in zip(files, paths, strict=True):
        out.pieces.extend(_pieces(fs, p, url, piece_rows))
    if out.rows == 0:
        raise SourceError(f"{source}: the span files hold no span")
    return out


def _pieces(fs: fsspec.AbstractFileSystem, path: str, url: str, piece_rows: int) -> list[Piece]:
    try:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            meta, schema = pf.metadata, pf.schema_arrow
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        raise SourceError(f"{url}: cannot read as Parquet ({exc})") from exc
    try:
        check_span_schema(schema, url)
    except RunDirError as exc:
        raise SourceError(str(exc)) from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise SourceError(f"{url}: not a span table: required column(s) {missing} missing")
    pieces, group, rows = [], [], 0
    for g in range(meta.num_row_groups):
        group.append(g)
        rows += meta.row_group(g).num_rows
        if rows >= piece_rows:
            pieces.append(Piece(url, tuple(group), rows, _may_hold_foreign(meta, schema, tuple(group))))
            group, rows = [], 0
    if group and rows:
        pieces.append(Piece(url, tuple(group), rows, _may_hold_foreign(meta, schema, tuple(group))))
    return pieces


#: the run files a run directory may hold beside its spans (read by the client, passed to tasks)
RUN_FILES = (MANIFEST, LEDGER, INGEST_REPORT)
