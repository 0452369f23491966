"""The command line misused as a hostile user would: every misuse ends with the exit status the
README documents and exactly one `error:` line naming the file, field or option — no
traceback, unless `hopscope --debug` asks for it. Names used in file names are made safe, a
FIFO in place of a run file is an error (never a hang), a failed analysis leaves the earlier
one's files as they were, and over-long string values are cut and counted on loading."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from hopscope.analysis.span_file import MAX_VALUE_BYTES
from hopscope.cli import app
from hopscope.commands.errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_USAGE,
    HopscopeGroup,
    classify,
    one_line,
)
from hopscope.core.rundir import (
    EXPERIMENT,
    INGEST_REPORT,
    LEDGER,
    MANIFEST,
    QUALITY,
    REPORT_HTML,
    SPANS_DIR,
    SPANS_PARQUET,
    graph_file,
    safe_name,
    table_file,
)
from hopscope.core.schema import SPAN_PARQUET_OPTIONS

runner = CliRunner()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic run (spans.parquet, ledger, manifest; no span files to ingest)."""
    out = tmp_path_factory.mktemp("cli-errors") / "base"
    res = runner.invoke(app, ["synth", "--out", str(out), "--events", "12", "--seed", "3"])
    assert res.exit_code == 0, res.output
    shutil.rmtree(out / SPANS_DIR)
    return out


@pytest.fixture
def run_dir(base_run: Path, tmp_path: Path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(base_run, d)
    return d


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def assert_one_error(res, code: int, *needles: str) -> str:
    """Exit `code`, one `error:` line holding every needle, no traceback."""
    assert res.exit_code == code, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output, res.output
    lines = error_lines(res.output)
    assert len(lines) == 1, res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- the misuses, each with its exit status and what the line must name -------------------------


def _table(d: Path) -> pa.Table:
    return pq.read_table(d / SPANS_PARQUET)


def _write(d: Path, t: pa.Table, name: str = SPANS_PARQUET) -> None:
    pq.write_table(t, d / name, **(SPAN_PARQUET_OPTIONS if name == SPANS_PARQUET else {}))


def _set_column(d: Path, name: str, values: pa.Array | pa.ChunkedArray, file: str = SPANS_PARQUET) -> None:
    t = pq.read_table(d / file)
    _write(d, t.set_column(t.schema.get_field_index(name), name, values), file)


def _corrupt_page(d: Path) -> None:
    """Garbage over the middle of the first column chunk's pages: the footer still parses."""
    path = d / SPANS_PARQUET
    meta = pq.ParquetFile(path).metadata.row_group(0).column(0)
    raw = bytearray(path.read_bytes())
    start = meta.data_page_offset + 4
    for i in range(start, start + min(400, meta.total_compressed_size - 8)):
        raw[i] = (raw[i] * 7 + 91) % 256
    path.write_bytes(bytes(raw))


def _phase(**extra: object) -> dict:
    phase = {"stack": "kafka", "workload": "fanout", "repeat": 0, "tracing": True, "label": "kafka-fanout-r0"}
    return {"phase": phase, "status": "ok", "seconds": 1.0, **extra}


@dataclass
class Misuse:
    id: str
    setup: Callable[[Path], None]
    code: int
    needles: tuple[str, ...]
    args: Callable[[Path], list[str]] = lambda d: ["analyze", str(d)]


MISUSES = [
    Misuse("run dir missing", lambda d: shutil.rmtree(d), EXIT_FAILED, ("no such directory",)),
    Misuse(
        "run dir is a file",
        lambda d: (shutil.rmtree(d), d.write_text("x")),
        EXIT_FAILED,
        ("not a directory",),
    ),
    Misuse(
        "run dir not writable",
        lambda d: None,
        EXIT_FAILED,
        ("RUN_DIR /proc/self", "not writable"),
        lambda d: ["analyze", "/proc/self"],
    ),
    Misuse(
        "no spans",
        lambda d: (d / SPANS_PARQUET).unlink(),
        EXIT_FAILED,
        (SPANS_PARQUET, "nothing to analyse"),
    ),
    Misuse(
        "spans.parquet a directory",
        lambda d: ((d / SPANS_PARQUET).unlink(), (d / SPANS_PARQUET).mkdir()),
        EXIT_FAILED,
        (SPANS_PARQUET, "a directory, not a regular file"),
    ),
    Misuse(
        "truncated parquet",
        lambda d: (d / SPANS_PARQUET).write_bytes((d / SPANS_PARQUET).read_bytes()[:3000]),
        EXIT_FAILED,
        (SPANS_PARQUET, "cannot read as Parquet"),
    ),
    Misuse("corrupt parquet page", _corrupt_page, EXIT_FAILED, (SPANS_PARQUET, "cannot be read")),
    Misuse(
        "start_ns as strings",
        lambda d: _set_column(d, "start_ns", pc.cast(_table(d)["start_ns"], pa.string())),
        EXIT_FAILED,
        (SPANS_PARQUET, "column start_ns", "expected int64"),
    ),
    Misuse(
        "stack as integers",
        lambda d: _set_column(d, "stack", pa.array(range(_table(d).num_rows), pa.int64())),
        EXIT_FAILED,
        (SPANS_PARQUET, "column stack", "expected string"),
    ),
    Misuse(
        "attributes as a string",
        lambda d: _set_column(d, "attributes", pa.array(["x"] * _table(d).num_rows)),
        EXIT_FAILED,
        (SPANS_PARQUET, "column attributes"),
    ),
    Misuse(
        "manifest not JSON",
        lambda d: (d / MANIFEST).write_text("{oops"),
        EXIT_FAILED,
        (MANIFEST, "not valid JSON"),
    ),
    Misuse(
        "manifest an array",
        lambda d: (d / MANIFEST).write_text("[1, 2]"),
        EXIT_FAILED,
        (MANIFEST, "expected a JSON object", "found an array"),
    ),
    Misuse(
        "manifest expected_hops wrong",
        lambda d: (d / MANIFEST).write_text(json.dumps({"expected_hops": {"kafka": {"fanout": "a,b"}}})),
        EXIT_FAILED,
        (MANIFEST, "field expected_hops.kafka.fanout", "expected an array"),
    ),
    Misuse(
        "manifest a FIFO",
        lambda d: ((d / MANIFEST).unlink(), os.mkfifo(d / MANIFEST)),
        EXIT_FAILED,
        (MANIFEST, "a FIFO"),
    ),
    Misuse(
        "ledger garbage",
        lambda d: (d / LEDGER).write_bytes(b"PAR1 nope"),
        EXIT_FAILED,
        (LEDGER, "cannot read as Parquet"),
    ),
    Misuse(
        "ledger intended_ns as strings",
        lambda d: _set_column(d, "intended_ns", pa.array(["1"] * pq.read_table(d / LEDGER).num_rows), LEDGER),
        EXIT_FAILED,
        (LEDGER, "column intended_ns", "expected int64"),
    ),
    Misuse(
        "ledger without receipts",
        lambda d: _write(d, pq.read_table(d / LEDGER).drop_columns(["receipts"]), LEDGER),
        EXIT_FAILED,
        (LEDGER, "column receipts", "missing"),
    ),
    Misuse(
        "ingest report not JSON",
        lambda d: (d / INGEST_REPORT).write_text("["),
        EXIT_FAILED,
        (INGEST_REPORT, "not valid JSON"),
    ),
    Misuse(
        "ingest report skipped a list",
        lambda d: (d / INGEST_REPORT).write_text(json.dumps({"files": 1, "skipped": [3]})),
        EXIT_FAILED,
        (INGEST_REPORT, "field skipped", "expected an object"),
    ),
    Misuse(
        "experiment not JSON",
        lambda d: (d / EXPERIMENT).write_text("nope"),
        EXIT_FAILED,
        (EXPERIMENT, "not valid JSON"),
    ),
    Misuse(
        "experiment phases a string",
        lambda d: (d / EXPERIMENT).write_text(json.dumps({"phases": "all"})),
        EXIT_FAILED,
        (EXPERIMENT, "field phases", "expected an array"),
    ),
    Misuse(
        "experiment phase without status",
        lambda d: (d / EXPERIMENT).write_text(
            json.dumps({"phases": [_phase(), {"phase": {}, "seconds": 1}]})
        ),
        EXIT_FAILED,
        (EXPERIMENT, "field phases[1].status", "missing"),
    ),
    Misuse(
        "garbage --to-postgres DSN",
        lambda d: None,
        EXIT_USAGE,
        ("--to-postgres", "not a libpq connection string"),
        lambda d: ["analyze", str(d), "--to-postgres", "this is = = not a dsn"],
    ),
    Misuse(
        "--mode unknown",
        lambda d: None,
        EXIT_USAGE,
        ("--mode", "choose event or jaeger"),
        lambda d: ["analyze", str(d), "--mode", "fast"],
    ),
    Misuse(
        "synth --events 0",
        lambda d: None,
        EXIT_USAGE,
        ("--events",),
        lambda d: ["synth", "--out", str(d.parent / "s"), "--events", "0"],
    ),
    Misuse(
        "synth config events 0",
        lambda d: (d.parent / "synth.yaml").write_text("events: 0\n"),
        EXIT_USAGE,
        ("synth.yaml", "field events"),
        lambda d: ["synth", "--out", str(d.parent / "s"), "--config", str(d.parent / "synth.yaml")],
    ),
    Misuse(
        "synth --out a file",
        lambda d: None,
        EXIT_USAGE,
        ("--out", "exists and is not a directory"),
        lambda d: ["synth", "--out", str(d / MANIFEST), "--events", "2"],
    ),
    Misuse(
        "synth --out not writable",
        lambda d: None,
        EXIT_USAGE,
        ("--out /proc", "not writable"),
        lambda d: ["synth", "--out", "/proc", "--events", "2"],
    ),
    Misuse(
        "synth --out cannot be made",
        lambda d: None,
        EXIT_USAGE,
        ("--out", "cannot be created"),
        lambda d: ["synth", "--out", str(d / MANIFEST / "sub"), "--events", "2"],
    ),
    Misuse(
        "synth --out name too long",
        lambda d: None,
        EXIT_USAGE,
        ("--out", "300 bytes long"),
        lambda d: ["synth", "--out", str(d.parent / ("x" * 300)), "--events", "2"],
    ),
    Misuse(
        "synth --out path too long",
        lambda d: None,
        EXIT_USAGE,
        ("--out", "the path is longer than"),
        lambda d: ["synth", "--out", str(d.parent.joinpath(*["y" * 200] * 25)), "--events", "2"],
    ),
    Misuse(
        "ingest --out a file",
        lambda d: None,
        EXIT_USAGE,
        ("--out", "exists and is not a directory"),
        lambda d: ["ingest", str(d), "--out", str(d / MANIFEST)],
    ),
    Misuse(
        "ingest --limit unknown name",
        lambda d: None,
        EXIT_USAGE,
        ("--limit", "max_depht=9", "max_depth, max_record_bytes"),
        lambda d: ["ingest", str(d), "--out", str(d.parent / "i"), "--limit", "max_depht=9"],
    ),
    Misuse(
        "ingest --limit not a size",
        lambda d: None,
        EXIT_USAGE,
        ("--limit", "positive whole number"),
        lambda d: ["ingest", str(d), "--out", str(d.parent / "i"), "--limit", "max_depth=-3"],
    ),
    Misuse(
        "unknown command",
        lambda d: None,
        EXIT_USAGE,
        ("No such command", "analyse"),
        lambda d: ["analyse", str(d)],
    ),
]


@pytest.mark.parametrize("misuse", MISUSES, ids=[m.id for m in MISUSES])
def test_misuse_is_one_line_and_a_documented_status(misuse: Misuse, run_dir: Path) -> None:
    misuse.setup(run_dir)
    before = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else None
    res = runner.invoke(app, misuse.args(run_dir))
    assert_one_error(res, misuse.code, *misuse.needles)
    if before is not None and misuse.args(run_dir)[0] == "analyze":
        # nothing was written: no report, no table, no staging folder left behind
        assert sorted(p.name for p in run_dir.iterdir()) == before


@pytest.mark.parametrize(
    "misuse",
    [m for m in MISUSES if m.id in ("manifest an array", "corrupt parquet page", "synth --events 0")],
    ids=lambda m: m.id,
)
def test_debug_shows_the_traceback(misuse: Misuse, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    misuse.setup(run_dir)
    monkeypatch.delenv("HOPSCOPE_DEBUG", raising=False)
    res = runner.invoke(app, ["--debug", *misuse.args(run_dir)])
    assert res.exit_code == misuse.code, res.output
    if misuse.code != EXIT_USAGE:  # a usage error has no traceback worth showing
        assert "Traceback (most recent call last)" in res.output, res.output
    assert len(error_lines(res.output)) == 1, res.output
    # the environment variable does the same
    monkeypatch.setenv("HOPSCOPE_DEBUG", "1")
    again = runner.invoke(app, misuse.args(run_dir))
    assert again.exit_code == misuse.code
    assert ("Traceback (most recent call last)" in again.output) == (misuse.code != EXIT_USAGE)


def test_environment_dsn_is_checked_too(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPSCOPE_RESULTS_DSN", "host")
    res = runner.invoke(app, ["analyze", str(run_dir)])
    assert_one_error(res, EXIT_USAGE, "$HOPSCOPE_RESULTS_DSN", "not a libpq connection string")


def test_refused_postgres_names_the_target_not_a_traceback(run_dir: Path) -> None:
    """A DSN that parses but reaches nothing: the analysis is written, then exit 1."""
    res = runner.invoke(
        app,
        ["analyze", str(run_dir), "--to-postgres", "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2"],
    )
    assert_one_error(res, EXIT_FAILED, "127.0.0.1:1/nowhere", "failed")
    assert (run_dir / REPORT_HTML).is_file()


def test_fifo_as_spans_parquet_is_an_error_not_a_hang(run_dir: Path) -> None:
    """In a process of its own with a timeout: a hang fails the test instead of stopping the suite."""
    (run_dir / SPANS_PARQUET).unlink()
    os.mkfifo(run_dir / SPANS_PARQUET)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hopscope.cli", "analyze", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("hopscope analyze hung on a FIFO in place of spans.parquet")
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_FAILED, output
    assert "Traceback" not in output
    (line,) = error_lines(output)
    assert SPANS_PARQUET in line and "a FIFO" in line


# --- names used in file names --------------------------------------------------------------------


def _rename_stack(d: Path, mapping: dict[str, str]) -> None:
    t = _table(d)
    col = t["stack"].cast(pa.string())
    for old, new in mapping.items():
        col = pc.if_else(pc.equal(col, old), new, col)
    _set_column(d, "stack", col)


@pytest.mark.parametrize(
    "name",
    ["a/b", "../../escape", "k" * 300, "nul\0byte", "with space", "a-b"],
    ids=["slash", "dotdot", "300", "nul", "space", "dash"],
)
def test_hostile_stack_names_make_safe_files_inside_the_run(name: str, run_dir: Path) -> None:
    _rename_stack(run_dir, {"kafka": name})
    res = runner.invoke(app, ["analyze", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and not error_lines(res.output)
    graphs = sorted(p.name for p in run_dir.glob("graph-*.graphml"))
    expected = graph_file(name, "fanout")
    assert expected in graphs
    assert "/" not in expected and "\0" not in expected and len(expected.encode()) < 255
    assert [p.name for p in run_dir.parent.iterdir()] == ["run"]  # nothing written beside the run


def test_safe_names_stay_distinct() -> None:
    names = ["a/b", "a_b", "a\\b", "a b", "a-b", "a..b", "..", ".", "", "k" * 300, "k" * 301, "ok_name"]
    slugs = [safe_name(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert safe_name("ok_name") == "ok_name" and safe_name("write_notify") == "write_notify"
    for s in slugs:
        assert s and "/" not in s and "\0" not in s and ".." not in s and not s.startswith(".")
        assert len(s) <= 64
    # stack and workload joined by "-": a dash inside a name is changed, so pairs cannot collide
    assert graph_file("a-b", "c") != graph_file("a", "b-c")


def test_two_stacks_whose_names_differ_only_by_a_slash_get_two_graphs(run_dir: Path) -> None:
    _rename_stack(run_dir, {"kafka": "a/b", "harper": "a_b"})
    res = runner.invoke(app, ["analyze", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert (run_dir / graph_file("a/b", "fanout")).is_file() and (
        run_dir / graph_file("a_b", "fanout")
    ).is_file()


# --- writing is all or nothing ---------------------------------------------------------------------


def test_a_failed_analysis_leaves_the_earlier_results_whole(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["analyze", str(run_dir)]).exit_code == 0
    names = ("hop_stats", "e2e", "verdicts")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert {table_file(n) for n in names} | {REPORT_HTML, QUALITY} <= set(before)

    import hopscope.analysis.report.analyze as analyze_module

    def broken_report(*args: object, **kwargs: object) -> object:
        raise OSError(28, "No space left on device", "report.html")

    monkeypatch.setattr(analyze_module, "write_report", broken_report)
    _rename_stack(run_dir, {"kafka": "renamed"})  # a new analysis would change every table
    res = runner.invoke(app, ["analyze", str(run_dir)])
    assert_one_error(res, EXIT_FAILED, "report.html", "No space left on device")
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    for name, data in before.items():
        if name != SPANS_PARQUET:
            assert after[name] == data, f"{name} changed by the failed analysis"
    assert set(after) == set(before)
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".hopscope-")]


def test_a_new_analysis_replaces_graphs_of_pairs_it_no_longer_has(run_dir: Path) -> None:
    assert runner.invoke(app, ["analyze", str(run_dir)]).exit_code == 0
    assert (run_dir / graph_file("kafka", "fanout")).is_file()
    _rename_stack(run_dir, {"kafka": "kafka2"})
    assert runner.invoke(app, ["analyze", str(run_dir)]).exit_code == 0
    assert not (run_dir / graph_file("kafka", "fanout")).exists()
    assert (run_dir / graph_file("kafka2", "fanout")).is_file()


# --- bounded loads ---------------------------------------------------------------------------------


def test_over_long_names_and_attribute_values_are_cut_and_counted(run_dir: Path) -> None:
    t = _table(run_dir)
    names = t["name"].to_pylist()
    names[0] = "N" * (MAX_VALUE_BYTES * 16)
    attrs = t["attributes"].to_pylist()
    attrs[1] = [*(attrs[1] or []), ("big", "V" * (MAX_VALUE_BYTES + 1))]
    t = t.set_column(t.schema.get_field_index("name"), "name", pa.array(names, pa.string()))
    t = t.set_column(
        t.schema.get_field_index("attributes"),
        "attributes",
        pa.array(attrs, t.schema.field("attributes").type),
    )
    _write(run_dir, t)
    res = runner.invoke(app, ["analyze", str(run_dir)])
    assert res.exit_code == 0, res.output
    quality = json.loads((run_dir / QUALITY).read_text())
    assert quality["load"]["values_truncated"] == {"name": 1, "attributes": 1}
    assert "over-long string value(s) cut" in res.output
    hops = pq.read_table(run_dir / table_file("hop_stats"))["hop"].to_pylist()
    assert all(len(h) <= MAX_VALUE_BYTES + 1 for h in hops)


def test_values_at_the_limit_are_kept_whole() -> None:
    from hopscope.analysis.span_file import bound_values

    col = pa.chunked_array([pa.array(["é" * MAX_VALUE_BYTES, "x"])])  # 2 bytes a character, at the limit
    out, cut = bound_values(col)
    assert cut == 0 and out is col
    out, cut = bound_values(pa.chunked_array([pa.array(["é" * (MAX_VALUE_BYTES + 1), None])]))
    assert cut == 1 and out.to_pylist() == ["é" * MAX_VALUE_BYTES + "…", None]
    enc = pa.chunked_array(
        [pa.array(["a" * (MAX_VALUE_BYTES + 5), "a" * (MAX_VALUE_BYTES + 9), "b"]).dictionary_encode()]
    )
    out, cut = bound_values(enc)
    assert cut == 2 and out.to_pylist() == ["a" * MAX_VALUE_BYTES + "…"] * 2 + ["b"]
    assert len(pc.unique(out.chunk(0).dictionary)) == len(out.chunk(0).dictionary)


# --- the mechanism ---------------------------------------------------------------------------------


def _tiny_app(body: Callable[[], None]) -> typer.Typer:
    tiny = typer.Typer(cls=HopscopeGroup)

    @tiny.callback()
    def main(debug: bool = typer.Option(False, "--debug")) -> None:
        pass

    @tiny.command()
    def go() -> None:
        body()

    return tiny


def test_an_error_left_in_a_thread_fails_the_command() -> None:
    """Before: the thread's traceback was printed and the command exited 0."""

    def body() -> None:
        t = threading.Thread(target=lambda: 1 / 0, name="worker")
        t.start()
        t.join()

    res = runner.invoke(_tiny_app(body), ["go"])
    assert_one_error(res, EXIT_INTERNAL, "in thread worker", "ZeroDivisionError")


def test_an_unexpected_exception_is_an_internal_error_line() -> None:
    def body() -> None:
        raise KeyError("boom\nsecond line")

    res = runner.invoke(_tiny_app(body), ["go"])
    line = assert_one_error(res, EXIT_INTERNAL, "internal error: KeyError", "--debug")
    assert "second line" in line
    res = runner.invoke(_tiny_app(body), ["--debug", "go"])
    assert res.exit_code == EXIT_INTERNAL and "Traceback (most recent call last)" in res.output


def test_messages_are_one_bounded_line() -> None:
    assert one_line("a\n\n  b  \nc") == "a | b | c"
    assert len(one_line("x" * 100_000)) == 2000
    code, message = classify(OSError(13, "Permission denied", "/x/y"))
    assert (code, message) == (EXIT_FAILED, "/x/y: Permission denied")


def test_ingest_limit_flag_sets_the_bound_the_readers_apply(tmp_path: Path) -> None:
    """`--limit` reaches the readers: a name over a lowered max_name_bytes is cut and counted,
    and the report records the limits in force."""
    line = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "é" * 40,  # 80 UTF-8 bytes
                                "kind": 2,
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": "2000",
                            }
                        ]
                    }
                ],
            }
        ]
    }
    src = tmp_path / "spans.jsonl"
    src.write_text(json.dumps(line) + "\n")
    out = tmp_path / "run"
    res = runner.invoke(app, ["ingest", str(src), "--out", str(out), "--limit", "max_name_bytes=9"])
    assert res.exit_code == 0, res.output
    names = pq.read_table(out / SPANS_PARQUET).column("name").to_pylist()
    assert names == ["éééé"]  # 8 bytes: the cut never splits a character
    report = json.loads((out / INGEST_REPORT).read_text())
    assert report["limits"]["max_name_bytes"] == 9
    assert report["adjusted"]["name_truncated"] == 1
