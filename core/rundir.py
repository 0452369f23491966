"""Run directories: their layout (every file name a part reads or writes) and `manifest.json`.

Part of the floor (`hopscope.core`): nothing else spells a run-directory file name.

The manifest is merged, not overwritten: each step adds its section, and
`expected_hops` (`{stack: {workload: [hop, ...]}}`) is merged per stack.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import psutil

# --- the layout of a run directory -------------------------------------------------------------
#: what ran: command, versions, host, workloads, expected hops, drivers' read-back settings
MANIFEST = "manifest.json"
#: the load generator's event ledger (one row per event and receipt)
LEDGER = "ledger.parquet"
#: the ledger's latency histograms (encoded HdrHistograms, µs, warm-up excluded)
LATENCY_HDR = "latency-hdr.json"
#: the collector's span files (`spans/<phase id>/*.jsonl[.zst]` in an experiment)
SPANS_DIR = "spans"
#: every span of the run in one flat table (hopscope.core.schema), written by ingest
SPANS_PARQUET = "spans.parquet"
#: what ingest read, per file and reader, and what it could not use
INGEST_REPORT = "ingest_report.json"
#: an experiment's per-phase figures, read by the report's experiment sections
EXPERIMENT = "experiment.json"
#: an experiment's phases, one bench run directory each
PHASES_DIR = "phases"
#: the logs of the processes a stack's driver started for the run (glue, Streams app)
LOGS_DIR = "logs"
#: the independent cross-checks' results
CROSSCHECKS = "crosschecks.json"
#: a synthetic run's known truth
TRUTH = "truth.json"
#: the analysis' data-quality figures
QUALITY = "quality.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
#: the traceback of a report that failed (the run directory keeps everything else)
REPORT_ERROR = "report.error.txt"


def graph_file(stack: str, workload: str) -> str:
    """The hop graph of one stack × workload, as GraphML."""
    return f"graph-{stack}-{workload}.graphml"


def table_file(name: str) -> str:
    """One analysis table (`hop_stats`, `e2e`, `tail_growth`, …) as Parquet."""
    return f"{name}.parquet"


DEFAULT_RUNS_DIR = Path("runs")
_VERSIONED = (
    "hopscope",
    "opentelemetry-sdk",
    "confluent-kafka",
    "psycopg",
    "redis",
    "httpx",
    "pyarrow",
    "pandas",
    "duckdb",
    "hdrhistogram",
    "aiomqtt",
)


def new_run_id(prefix: str = "run") -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def create_run_dir(
    out: Path | None = None, prefix: str = "run", runs_dir: Path = DEFAULT_RUNS_DIR
) -> tuple[Path, str]:
    """Make (or reuse an empty/own) run directory; returns (path, run_id)."""
    if out is None:
        run_id = new_run_id(prefix)
        path = runs_dir / run_id
    else:
        path = out
        run_id = path.name
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"run directory {path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path, run_id


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return doc


def update_manifest(run_dir: Path, **sections: Any) -> dict[str, Any]:
    """Merge sections into manifest.json (expected_hops merged per stack) and write it back."""
    doc = read_manifest(run_dir)
    for key, value in sections.items():
        if key == "expected_hops":
            merged = doc.setdefault("expected_hops", {})
            for stack, workloads in value.items():
                merged.setdefault(stack, {}).update(workloads)
        else:
            doc[key] = value
    tmp = run_dir / f".{MANIFEST}.tmp"
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.replace(tmp, run_dir / MANIFEST)
    return doc


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def host_info() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": psutil.cpu_count(),
        "memory_bytes": vm.total,
        "load_average": list(os.getloadavg()),
    }


def git_info(repo: Path | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the source tree; `commit` is null without git or commits."""
    cwd = repo or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def base_manifest(run_id: str, command: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "command": command,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(),
        "versions": versions(),
        "host": host_info(),
        "git": git_info(),
    }
