"""Run directories: their layout (every file name a part reads or writes) and `manifest.json`.

Part of the floor (`hopscope.core`): nothing else spells a run-directory file name.

The manifest is merged, not overwritten: each step adds its section, and
`expected_hops` (`{stack: {workload: [hop, ...]}}`) is merged per stack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import re
import secrets
import socket
import stat
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
    """The hop graph of one stack × workload, as GraphML (names made safe by `safe_name`)."""
    return f"graph-{safe_name(stack)}-{safe_name(workload)}.graphml"


#: every graph_file() name (what a new analysis replaces: a graph of a pair it no longer has goes)
GRAPH_FILES = "graph-*.graphml"

#: a name that is used in a file name as it is: letters, digits, `_` and inner `.`, at most 64
#: characters (no `-`: graph_file() joins two names with it)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,62}[A-Za-z0-9_])?")


def safe_name(name: str) -> str:
    """`name` as a part of a file name: itself when it is safe (`_SAFE_NAME`, no `..`), else its
    safe characters (at most 40; `/`, `..`, NUL, spaces … become `_`) + `~` + 10 hex digits of
    its SHA-256, so distinct names stay distinct and a safe name never looks like a changed one."""
    if _SAFE_NAME.fullmatch(name) and ".." not in name:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    # an empty slug (an empty name, or one of symbols only) would leave `graph--.graphml`-like
    # names nobody can tell apart by eye
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", name)[:40].strip("_") or "unnamed"
    return f"{slug}~{digest}"


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


class RunDirError(ValueError):
    """A run directory, or a file in it, that cannot be used: the message names the file (and
    the field or column) and the problem."""


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def run_file(path: Path) -> Path | None:
    """`path` when it is a regular file (or a link to one), None when it does not exist; a
    FIFO, device, socket or directory in its place is a RunDirError (opening a FIFO to read it
    would wait for a writer forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")
        raise RunDirError(f"{path}: {kind}, not a regular file")
    return path


def read_json_file(path: Path, shape: Shape | None = None) -> dict[str, Any]:
    """A JSON object from a run directory ({} when the file is absent), checked against `shape`."""
    if run_file(path) is None:
        return {}
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise RunDirError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(doc, dict):
        raise RunDirError(f"{path}: expected a JSON object, found {json_type(doc)}")
    if shape is not None:
        problem = shape.problem(doc, "")
        if problem:
            raise RunDirError(f"{path}: {problem}")
    return doc


# --- the shapes of run-directory JSON files -----------------------------------------------------


def json_type(value: object) -> str:
    """The JSON name of a value's type (for messages)."""
    if value is None:
        return "null"
    for types, name in (
        (bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "an array"), (dict, "an object"),
    ):  # fmt: skip
        if isinstance(value, types):
            return name
    return type(value).__name__


class Shape:
    """What a JSON value must look like; `problem(value, where)` says what is wrong, or None.
    Only what the readers rely on is checked: fields not named are not looked at."""

    def problem(self, value: object, where: str) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError


_KIND_NAMES: dict[type | None, str] = {
    str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
    dict: "an object", None: "null",
}  # fmt: skip


class Is(Shape):
    """One of the given JSON kinds: `str`, `int` (no booleans), `float` (any number), `bool`,
    `list`, `dict`, `None`."""

    def __init__(self, *kinds: type | None) -> None:
        self.kinds = kinds

    def _fits(self, value: object, kind: type | None) -> bool:
        if kind is None:
            return value is None
        if kind in (int, float) and isinstance(value, bool):
            return False
        if kind is float:
            return isinstance(value, int | float)
        return isinstance(value, kind)

    def problem(self, value: object, where: str) -> str | None:
        if any(self._fits(value, k) for k in self.kinds):
            return None
        wanted = " or ".join(_KIND_NAMES[k] for k in self.kinds)
        return f"field {where or '(top)'}: expected {wanted}, found {json_type(value)}"


class Obj(Shape):
    """An object whose named fields (when present; `required` ones always) have their shapes."""

    def __init__(
        self, fields: dict[str, Shape] | None = None, required: tuple[str, ...] = (), *, null: bool = False
    ):
        self.fields = fields or {}
        self.required = required
        self.null = null

    def problem(self, value: object, where: str) -> str | None:
        if value is None and self.null:
            return None
        if not isinstance(value, dict):
            return Is(dict, *((None,) if self.null else ())).problem(value, where)
        for key in self.required:
            if key not in value:
                return f"field {_join(where, key)}: missing"
        for key, shape in self.fields.items():
            if key in value:
                problem = shape.problem(value[key], _join(where, key))
                if problem:
                    return problem
        return None


class MapOf(Shape):
    """An object (or null) whose every value has one shape."""

    def __init__(self, values: Shape, *, null: bool = True) -> None:
        self.values = values
        self.null = null

    def problem(self, value: object, where: str) -> str | None:
        if value is None and self.null:
            return None
        if not isinstance(value, dict):
            return Is(dict).problem(value, where)
        for key, item in value.items():
            problem = self.values.problem(item, _join(where, str(key)))
            if problem:
                return problem
        return None


class ListOf(Shape):
    """An array (or null) whose every item has one shape (and of `length` items, if given)."""

    def __init__(self, items: Shape, *, null: bool = True, length: int | None = None) -> None:
        self.items = items
        self.null = null
        self.length = length

    def problem(self, value: object, where: str) -> str | None:
        if value is None and self.null:
            return None
        if not isinstance(value, list):
            return Is(list).problem(value, where)
        if self.length is not None and len(value) != self.length:
            return f"field {where or '(top)'}: expected {self.length} items, found {len(value)}"
        for i, item in enumerate(value):
            problem = self.items.problem(item, f"{where}[{i}]")
            if problem:
                return problem
        return None


class Anything(Shape):
    def problem(self, value: object, where: str) -> str | None:
        return None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


STR_OR_NULL = Is(str, None)
#: manifest.json, as far as the analysis and the report read it
MANIFEST_SHAPE = Obj(
    {
        "run_id": STR_OR_NULL,
        "expected_hops": MapOf(MapOf(ListOf(Is(str), null=False), null=False)),
    }
)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR's manifest ({} when it has none); a RunDirError names what is wrong with it."""
    return read_json_file(run_dir / MANIFEST, MANIFEST_SHAPE)


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


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def host_info() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
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
