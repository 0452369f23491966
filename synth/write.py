"""Write a generated run into a run directory: rotated OTLP JSON files (with malformed lines),
spans.parquet, the ledger, the manifest and truth.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from hopscope.core.rundir import LEDGER, MANIFEST, SPANS_DIR, SPANS_PARQUET, TRUTH
from hopscope.core.schema import SPAN_PARQUET_OPTIONS

from .config import SynthConfig
from .otlp import otlp_lines
from .tables import SynthRun


def write_run(
    run: SynthRun,
    out: Path,
    cfg: SynthConfig,
    *,
    parquet: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Write SPANS_DIR (rotated OTLP JSON lines), SPANS_PARQUET, LEDGER, MANIFEST and TRUTH into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    spans_dir = out / SPANS_DIR
    spans_dir.mkdir(exist_ok=True)
    for old in spans_dir.glob("spans*.jsonl"):
        old.unlink()
    lines = otlp_lines(run.table, cfg.spans_per_line)
    files = [lines[i : i + cfg.lines_per_file] for i in range(0, len(lines), cfg.lines_per_file)] or [[]]
    written = {}
    for k, chunk in enumerate(files):
        last = k == len(files) - 1
        name = (
            "spans.jsonl" if last else f"spans-2026-11-28T00-00-{k:02d}.000.jsonl"
        )  # exporter's rotation names
        body = b"\n".join(chunk) + (b"\n" if chunk else b"")
        if last and cfg.breakage.malformed_lines:
            body += b"".join(
                b'{"resourceSpans": [ {"broken line ' + str(i).encode() + b"\n"
                for i in range(cfg.breakage.malformed_lines)
            )
        (spans_dir / name).write_bytes(body)
        if progress:
            progress(k + 1, len(files))
    written["spans"] = spans_dir
    if parquet:
        pq.write_table(run.table, out / SPANS_PARQUET, **SPAN_PARQUET_OPTIONS)
        written[SPANS_PARQUET] = out / SPANS_PARQUET
    pq.write_table(run.ledger, out / LEDGER)
    (out / MANIFEST).write_text(json.dumps(run.manifest, indent=2))
    (out / TRUTH).write_text(json.dumps(run.truth, indent=2))
    written.update({"ledger": out / LEDGER, "manifest": out / MANIFEST, "truth": out / TRUTH})
    return written
