"""`hopscope analyze` on run directories broken at random: any subset of its files missing,
truncated, overwritten with garbage, bytes flipped, replaced by a directory or a FIFO, JSON
fields given values of the wrong type, Parquet columns of the wrong type, dropped or all null.
Whatever the damage, the command either succeeds (and writes the report) or exits 1 — the
README's status for an unusable run directory — with exactly one `error:` line; never an
uncaught exception, a traceback, an internal error (exit 70) or a hang.

Derandomized by default so the suite is stable; HOPSCOPE_FUZZ_RANDOM=1 draws new cases and
HOPSCOPE_FUZZ_EXAMPLES=N draws N of them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.commands.errors import EXIT_FAILED
from hopscope.core.rundir import (
    EXPERIMENT,
    INGEST_REPORT,
    LEDGER,
    MANIFEST,
    REPORT_HTML,
    SPANS_DIR,
    SPANS_PARQUET,
)

runner = CliRunner()
EXAMPLES = int(os.environ.get("HOPSCOPE_FUZZ_EXAMPLES", "100"))
#: seconds one analysis may take before the case counts as a hang
HANG_S = 60


class Hang(BaseException):
    """Raised by the alarm (a BaseException: the CLI's handler must not turn it into a line)."""


@contextlib.contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def ring(signum: int, frame: object) -> None:
        raise Hang(f"hopscope analyze ran over {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _phase(stack: str, workload: str) -> dict[str, Any]:
    """A phase record as `hopscope run` writes it, with a resource record to break."""
    return {
        "phase": {"stack": stack, "workload": workload, "repeat": 0, "tracing": True, "label": f"{stack}-{workload}-r0"},
        "phase_id": f"p-{stack}-{workload}", "status": "ok", "seconds": 2.0, "error": None, "span_files": 1,
        "driver": {},
        "figures": {"events": 8, "outcomes": {"delivered": 8}, "e2e_ms": {"p50": 1.0, "p99": 2.0, "p999": 2.5},
                    "sweep": [{"target_rate": r, "events": 4, "delivered": 4, "achieved_rate": r * 0.9,
                               "p50_ms": 1.0 * r, "p99_ms": 2.0 * r, "p999_ms": 2.5 * r} for r in (10.0, 20.0)]},
        "resources": {
            "events": 8, "seconds": 2.0, "schedule_lag_p99_ms": 0.1, "host_bound": False, "host_bound_reasons": [],
            "host_cpu": {"mean_percent": 20.0, "share_above": 0.0, "samples": [[0.5, 20.0], [1.0, 21.0]]},
            "services": {"loadgen": {"role": "bench", "state": "running", "cpu_s": 0.1, "cpu_ms_per_event": 0.01,
                                     "peak_rss_mb": 50.0, "processes": 1}},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small run with every file analyze reads, which analyses cleanly."""
    out = tmp_path_factory.mktemp("fuzz") / "base"
    res = runner.invoke(app, ["synth", "--out", str(out), "--events", "8", "--seed", "11"])
    assert res.exit_code == 0, res.output
    shutil.rmtree(out / SPANS_DIR)  # the span files' own readers are fuzzed with the collector
    spans = pq.read_table(out / SPANS_PARQUET)
    pairs = sorted(
        {(s, w) for s, w in zip(spans["stack"].to_pylist(), spans["workload"].to_pylist(), strict=True)}
    )
    (out / INGEST_REPORT).write_text(
        json.dumps({"files": 1, "spans": spans.num_rows, "skipped": {"bad_line": 2}, "adjusted": {}, "errors": [],
                    "readers": {"otlp-json": 1}, "fast_path_declined": []})
    )  # fmt: skip
    (out / EXPERIMENT).write_text(
        json.dumps(
            {"run_id": "fuzz", "profile": "quick", "stacks": sorted({s for s, _ in pairs}),
             "workloads": sorted({w for _, w in pairs}), "repeat": 1, "up_error": None,
             "phases": [_phase(s, w) for s, w in pairs], "crosschecks": {}, "rate_warnings": [],
             "fairness_expected": [{"control": "batching", "expected": "same"}], "stack_info": {},
             "capacity_parts": {}, "services_fairness": {}}
        )
    )  # fmt: skip
    res = runner.invoke(app, ["analyze", str(out)])
    assert res.exit_code == 0, res.output
    for p in out.iterdir():  # back to the inputs only
        if p.name not in (SPANS_PARQUET, LEDGER, MANIFEST, INGEST_REPORT, EXPERIMENT, "truth.json"):
            p.unlink()
    return out


# --- the damage ------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)

#: paths into each JSON file that the analysis or the report reads (an int is a list index)
JSON_PATHS: dict[str, list[tuple[Any, ...]]] = {
    MANIFEST: [
        ("run_id",), ("expected_hops",), ("expected_hops", "kafka"), ("expected_hops", "kafka", "fanout"),
        ("component_telemetry",), ("component_telemetry", "problems"), ("phases",),
        ("phases", "p1", "component_telemetry", "problems"),
    ],
    INGEST_REPORT: [
        ("files",), ("spans",), ("skipped",), ("skipped", "bad_line"), ("adjusted",), ("errors",), ("readers",),
        ("readers", "otlp-json"), ("fast_path_declined",),
    ],
    EXPERIMENT: [
        ("run_id",), ("profile",), ("stacks",), ("stacks", 0), ("workloads",), ("workloads", 0), ("repeat",),
        ("up_error",), ("phases",), ("phases", 0), ("crosschecks",), ("rate_warnings",), ("fairness_expected",),
        ("stack_info",), ("stack_info", "kafka"), ("capacity_parts",), ("services_fairness",),
        *[("phases", 0, k) for k in ("phase", "phase_id", "status", "seconds", "error", "span_files", "driver",
                                       "figures", "resources")],
        *[("phases", 0, "phase", k) for k in ("stack", "workload", "repeat", "tracing", "label")],
        *[("phases", 0, "figures", k) for k in ("events", "outcomes", "e2e_ms", "sweep")],
        ("phases", 0, "figures", "e2e_ms", "p50"), ("phases", 0, "figures", "outcomes", "delivered"),
        *[("phases", 0, "resources", k) for k in ("events", "services", "host_cpu", "host_bound", "seconds",
                                                  "host_bound_reasons", "host_bound_rule", "schedule_lag_p99_ms")],
        *[("phases", 0, "resources", "services", "loadgen", k) for k in ("role", "cpu_s", "peak_rss_mb", "processes")],
        ("phases", 0, "resources", "services", "loadgen"), ("phases", 0, "resources", "host_cpu", "samples"),
        ("phases", 0, "resources", "host_cpu", "samples", 0), ("phases", 0, "resources", "host_cpu", "mean_percent"),
        ("phases", 0, "figures", "sweep", 0), ("phases", 0, "figures", "sweep", 0, "target_rate"),
        ("phases", 0, "figures", "sweep", 0, "p99_ms"), ("fairness_expected", 0), ("fairness_expected", 0, "control"),
        ("stack_info", "kafka", "label"),
    ],
}  # fmt: skip

#: columns of each Parquet file, and arrays of the wrong type to put in one's place
PARQUET_FILES = (SPANS_PARQUET, LEDGER)


def _wrong_array(kind: str, n: int) -> pa.Array:
    return {
        "int": pa.array(range(n), pa.int64()),
        "string": pa.array(["x"] * n),
        "float": pa.array([0.5] * n),
        "bool": pa.array([True] * n),
        "list": pa.array([[1]] * n, pa.list_(pa.int64())),
        "struct": pa.array([{"a": 1}] * n, pa.struct([("a", pa.int64())])),
        "null": pa.nulls(n),
    }[kind]


WHOLE_FILE = st.sampled_from(["delete", "truncate", "garbage", "flip", "directory", "fifo"])


@st.composite
def damage(draw: st.DrawFn, name: str) -> tuple:
    """One change to one file: (what, its parameters)."""
    kinds = ["whole"] + (["json"] if name in JSON_PATHS else ["column"])
    kind = draw(st.sampled_from(kinds))
    if kind == "whole":
        what = draw(WHOLE_FILE)
        if what == "truncate":
            return (what, draw(st.floats(0, 0.99)))
        if what == "garbage":
            return (what, draw(st.binary(max_size=64)))
        if what == "flip":
            return (
                what,
                draw(st.lists(st.tuples(st.floats(0, 0.999), st.integers(0, 255)), min_size=1, max_size=8)),
            )
        return (what,)
    if kind == "json":
        if draw(st.booleans()):
            return ("json_path", draw(st.sampled_from(JSON_PATHS[name])), draw(json_values))
        return ("json_whole", draw(json_values))
    op = draw(st.sampled_from(["retype", "drop", "nulls"]))
    column = draw(st.integers(0, 40))  # taken modulo the file's columns
    return (op, column, draw(st.sampled_from(["int", "string", "float", "bool", "list", "struct", "null"])))


def _set_path(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(key, int):
        if not isinstance(doc, list) or not doc:
            return doc
        doc[0] = _set_path(doc[0], rest, value)
        return doc
    if not isinstance(doc, dict):
        doc = {}
    doc[key] = _set_path(doc.get(key), rest, value)
    return doc


def apply(path: Path, change: tuple) -> None:
    what = change[0]
    if what == "keep" or not path.is_file():
        return
    if what == "delete":
        path.unlink()
    elif what == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * change[1])])
    elif what == "garbage":
        path.write_bytes(change[1])
    elif what == "flip":
        data = bytearray(path.read_bytes())
        for at, value in change[1]:
            if data:
                data[int(at * len(data))] = value
        path.write_bytes(bytes(data))
    elif what == "directory":
        path.unlink()
        path.mkdir()
    elif what == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif what == "json_whole":
        path.write_text(json.dumps(change[1]))
    elif what == "json_path":
        doc = json.loads(path.read_text())
        path.write_text(json.dumps(_set_path(doc, change[1], change[2])))
    else:  # a column of a Parquet file
        table = pq.read_table(path)
        i = change[1] % table.num_columns
        name = table.column_names[i]
        if what == "drop":
            table = table.remove_column(i)
        elif what == "nulls":
            table = table.set_column(i, name, pa.nulls(table.num_rows, table.schema.field(i).type))
        else:
            table = table.set_column(i, name, _wrong_array(change[2], table.num_rows))
        pq.write_table(table, path)


FILES = (SPANS_PARQUET, LEDGER, MANIFEST, INGEST_REPORT, EXPERIMENT)


@st.composite
def run_damage(draw: st.DrawFn) -> dict[str, tuple]:
    """A random subset of the files (mostly one or two: a file broken early hides the rest),
    each with one change."""
    names = draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=3, unique=True))
    return {name: draw(damage(name)) for name in names}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("HOPSCOPE_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=run_damage())
def test_analyze_a_broken_run_succeeds_or_says_why_in_one_line(
    changes: dict[str, tuple], base_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run_dir = tmp_path_factory.mktemp("case") / "run"
    shutil.copytree(base_run, run_dir)
    for name, change in changes.items():
        apply(run_dir / name, change)
    with alarm(HANG_S):
        res = runner.invoke(app, ["analyze", str(run_dir)])
    described = f"{changes}\n{res.output}"
    assert res.exception is None or isinstance(res.exception, SystemExit), described
    assert "Traceback" not in res.output, described
    assert res.exit_code in (0, EXIT_FAILED), described
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    if res.exit_code == 0:
        assert not errors and (run_dir / REPORT_HTML).is_file(), described
    else:
        assert len(errors) == 1, described
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".hopscope-")], described
    shutil.rmtree(run_dir.parent)
