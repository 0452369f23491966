"""The reader contract under bad input (issue #22): nothing crashes, no valid span is lost.

Hypothesis drives the generators of benchmarks/fuzz_readers.py (valid spans of every format
mixed with type confusion in every field, garbage lines, truncations, byte damage, deep
nesting, huge values, BOMs, torn compression): no exception escapes the read of a file, every
valid span of an intact record is kept, and where the case knows how many bad records it
holds, exactly that many problems are counted. tests/unit/fuzz_corpus/ holds the shapes the
first fuzzing found, each with what reading it must give (cases.json). The rest: limits,
atomic outputs, the catch-alls, the native reader on deep nesting.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopscope.collector import ingest as ingest_mod
from hopscope.collector.errors import Limits, MalformedInput, NoUsableSpans, Problems
from hopscope.collector.ingest import _read_one, ingest
from hopscope.collector.readers import formats, otlp_dict, otlp_native, read_bytes, read_file

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_readers.py"
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"


def _load_generators():
    # benchmarks/ is no package: import the script by path (registered, so its dataclasses resolve)
    spec = importlib.util.spec_from_file_location("fuzz_readers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_readers"] = mod
    spec.loader.exec_module(mod)
    return mod


fz = _load_generators()

FUZZ = settings(
    max_examples=80,
    deadline=timedelta(seconds=5),  # no hang: every example is small, and must be read quickly
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check(case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # the same file read three ways: as ingest does, by the Python readers alone, with pyarrow.json
        out = fz.check(case, Path(tmp) / f"case{case.suffix}", differential=2)
    assert not out.violations, f"{case.kind}: {out.violations}"


# ---------------------------------------------------------------- generated cases, every reader


@FUZZ
@given(st.randoms(use_true_random=False))
def test_otlp_json_lines_mixed_with_bad_spans_and_lines(rng) -> None:
    _check(fz.otlp_jsonl_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_otlp_documents_and_api_envelopes(rng) -> None:
    _check(fz.otlp_document_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_jaeger_documents(rng) -> None:
    _check(fz.jaeger_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_zipkin_lists(rng) -> None:
    _check(fz.zipkin_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_otlp_proto_framing(rng) -> None:
    _check(fz.proto_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_proto_bad_length_prefix_resyncs(rng) -> None:
    _check(fz.proto_corrupt_frame_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_zstd_stream_and_collector_records(rng) -> None:
    _check(fz.compressed_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_torn_files_keep_what_came_before(rng) -> None:
    _check(fz.torn_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_limits_deep_nesting_and_huge_values(rng) -> None:
    _check(fz.limits_case(rng))


@settings(FUZZ, max_examples=10)
@given(st.randoms(use_true_random=False))
def test_zstd_past_the_decompression_bound(rng) -> None:
    _check(fz.bomb_case(rng))


@settings(FUZZ, max_examples=300)
@given(st.randoms(use_true_random=False))
def test_random_byte_damage_never_escapes(rng) -> None:
    _check(fz.mutated_case(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_a_forced_wrong_format_never_escapes(rng) -> None:
    _check(fz.forced_format_case(rng))


@settings(FUZZ, max_examples=60)
@given(st.binary(max_size=600), st.sampled_from([".jsonl", ".json", ".pb", ".zst", ".bin"]))
def test_arbitrary_bytes_never_escape(data: bytes, suffix: str) -> None:
    _check(fz.Case("bytes", suffix, data, set(), None, extra_ok=True))


@settings(FUZZ, max_examples=60)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=20,
    ),
    st.sampled_from(
        ["traceId", "spanId", "kind", "status", "attributes", "links", "name", "startTimeUnixNano"]
    ),
)
def test_any_json_value_in_any_otlp_field(value, field_name: str) -> None:
    """Any JSON value in a span field: the span is kept or counted, never a crash; its neighbour kept."""
    import random

    rng = random.Random(0)
    bad, _ = fz.otlp_span(rng, 0)
    good, key = fz.otlp_span(rng, 1)
    bad[field_name] = value
    # the standard library writes integers of any size (orjson refuses past 64 bits)
    data = json.dumps({"resourceSpans": [fz._resource_spans([bad, good])]}).encode()
    _check(fz.Case("any value", ".jsonl", data, {key}, None, extra_ok=True))


# ---------------------------------------------------------------- the seeded corpus


CASES = json.loads((CORPUS / "cases.json").read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_case(name: str) -> None:
    want = CASES[name]
    table, problems = _read_one(CORPUS / name, False, None, False, Limits())
    assert dict(problems.skipped) == want["skipped"], (want["why"], problems.messages)
    assert (0 if table is None else table.num_rows) == want["spans"], (want["why"], problems.messages)
    assert all(str(CORPUS / name) in m and "\n" not in m for m in problems.messages)


def test_the_whole_corpus_in_one_ingest(tmp_path: Path) -> None:
    result = ingest([CORPUS], tmp_path / "run")  # cases.json itself is a file without spans: counted
    report = json.loads((tmp_path / "run" / "ingest_report.json").read_text())
    assert report["spans"] == result.spans == sum(c["spans"] for c in CASES.values())
    assert pq.read_metadata(tmp_path / "run" / "spans.parquet").num_rows == result.spans
    for name, want in CASES.items():
        assert report["skipped_by_file"].get(str(CORPUS / name), {}) == want["skipped"], name
    (failed,) = report["failed_files"]
    assert failed.startswith(f"{CORPUS / 'cases.json'}: JSON with no known top-level key")
    assert report["limits"] == Limits().as_dict()


def test_the_corpus_through_pyarrow_json_in_a_process_of_its_own() -> None:
    """The fast path used where the native reader is not built: pyarrow.json segfaults on some
    inputs (a root null), so it runs in a child; every corpus case must read as with the others."""
    code = """
import json, sys
from pathlib import Path
from hopscope.collector.errors import Limits
from hopscope.collector.ingest import _read_one
corpus = Path(sys.argv[1])
got = {}
for name in json.loads((corpus / "cases.json").read_text()):
    table, problems = _read_one(corpus / name, False, None, False, Limits())
    got[name] = [0 if table is None else table.num_rows, dict(problems.skipped), dict(problems.readers)]
print(json.dumps(got))
"""
    env = dict(os.environ, HOPSCOPE_NATIVE="0")
    done = subprocess.run(
        [sys.executable, "-c", code, str(CORPUS)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    for name, want in CASES.items():
        assert got[name][:2] == [want["spans"], want["skipped"]], name
    assert "native" not in {r for _, _, readers in got.values() for r in readers}
    assert any("pyarrow.json" in readers for _, _, readers in got.values())


# ---------------------------------------------------------------- the native reader and deep nesting

NATIVE_BUILT = otlp_native._parse is not None


@pytest.mark.skipif(not NATIVE_BUILT, reason="native reader not built")
def test_native_reader_declines_deep_nesting_in_a_process_of_its_own() -> None:
    """~10,000 levels in an unknown field segfaulted the native reader; a crash here kills only the child."""
    code = """
import sys
from hopscope_otlp_native import parse_json_lines
head = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","x":'
for levels in (10_000, 1_000_000):
    for threads in (1, 2):
        line = head + b"[" * levels + b"]" * levels + b"}]}]}]}\\n"
        try:
            parse_json_lines(line * 2, threads)
        except ValueError as e:
            assert "max_depth" in str(e), e
            continue
        sys.exit(f"accepted {levels} levels")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])


def test_deep_nesting_through_every_reader(tmp_path: Path) -> None:
    """The same input through the whole read: the deep line counted, the others kept (native or not)."""
    f = CORPUS / "deep_unknown_field_10000.jsonl"
    for native in (True, False):
        problems = Problems()
        old = otlp_native.AVAILABLE
        otlp_native.AVAILABLE = native and NATIVE_BUILT
        try:
            t = read_file(f, problems)
        finally:
            otlp_native.AVAILABLE = old
        assert t.num_rows == 2 and dict(problems.skipped) == {"too_deep": 1}
        assert "line 2" in problems.messages[0]


def test_a_native_panic_is_a_decline_not_a_crash(tmp_path: Path, monkeypatch) -> None:
    class PanicException(BaseException):  # PyO3's, which is no Exception
        pass

    def boom(*args, **kwargs):
        raise PanicException("index out of bounds")

    monkeypatch.setattr(otlp_native, "_parse", boom)
    monkeypatch.setattr(otlp_native, "AVAILABLE", True)
    f = CORPUS / "bom.jsonl"
    problems = Problems()
    assert read_file(f, problems).num_rows == 3
    assert problems.readers == {"python": 1} and "panicked" in problems.declined[0]


# ---------------------------------------------------------------- limits


def _line(*spans: dict) -> bytes:
    return orjson.dumps({"resourceSpans": [fz._resource_spans(list(spans))]})


def test_values_and_names_over_the_limits_are_cut_and_flagged(tmp_path: Path) -> None:
    import random

    rng = random.Random(3)
    s, key = fz.otlp_span(rng, 0)
    s["name"] = "ñ" * 3000  # 6,000 bytes
    s["attributes"].append({"key": "sql", "value": {"stringValue": "€" * 30_000}})  # 90,000 bytes
    other, other_key = fz.otlp_span(rng, 1)
    f = tmp_path / "big.jsonl"
    f.write_bytes(_line(s, other) + b"\n")
    problems = Problems()
    rows = {(r["trace_id"], r["span_id"]): r for r in read_file(f, problems).to_pylist()}
    assert set(rows) == {key, other_key} and not problems.skipped
    big = rows[key]
    limits = Limits()
    assert len(big["name"].encode()) <= limits.max_name_bytes and big["name"] == "ñ" * 2048
    attrs = dict(big["attributes"])
    assert len(attrs["sql"].encode()) <= limits.max_attribute_bytes and set(attrs["sql"]) == {"€"}
    assert attrs["hopscope.ingest.flag"] == "attribute_truncated,name_truncated"
    assert problems.adjusted == {"attribute_truncated": 1, "name_truncated": 1}
    assert "hopscope.ingest.flag" not in dict(rows[other_key]["attributes"])
    # raised limits keep them whole
    problems = Problems(limits=Limits(max_attribute_bytes=1 << 20, max_name_bytes=1 << 20))
    rows = {(r["trace_id"], r["span_id"]): r for r in read_file(f, problems).to_pylist()}
    assert rows[key]["name"] == "ñ" * 3000 and not problems.adjusted


def test_records_over_max_record_bytes_are_counted_not_parsed(tmp_path: Path) -> None:
    import random

    rng = random.Random(4)
    small, _ = fz.otlp_span(rng, 0)
    big, _ = fz.otlp_span(rng, 1)
    big["attributes"].append({"key": "pad", "value": {"stringValue": "x" * 5000}})
    f = tmp_path / "lines.jsonl"
    f.write_bytes(_line(big) + b"\n" + _line(small) + b"\n")
    problems = Problems(limits=Limits(max_record_bytes=4000))
    t = read_file(f, problems)
    assert t.num_rows == 1 and dict(problems.skipped) == {"too_large": 1} and "line 1" in problems.messages[0]
    # proto frames too: the frame is skipped whole, the next one read
    frames = [
        fz._proto_request([fz.proto_span(rng, i)[0] for i in range(40)]),
        fz._proto_request([fz.proto_span(rng, 9)[0]]),
    ]
    pb = tmp_path / "f.pb"
    pb.write_bytes(fz._framed(frames))
    problems = Problems(limits=Limits(max_record_bytes=len(frames[0]) - 1))
    assert read_file(pb, problems).num_rows == 1 and dict(problems.skipped) == {"too_large": 1}


def test_a_zstd_bomb_stays_within_the_decompression_bound(tmp_path: Path) -> None:
    """A 200 KB file that expands to 6 GiB: decompressed in bounded steps up to the limit, counted."""
    import random

    rng = random.Random(5)
    spans = [fz.otlp_span(rng, i) for i in range(3)]
    head = zstandard.ZstdCompressor().compress(_line(*(s for s, _ in spans)) + b"\n")
    blank = zstandard.ZstdCompressor(level=19).compress(b"\n" * (64 << 20))  # 64 MiB of blank lines
    f = tmp_path / "bomb.jsonl.zst"
    f.write_bytes(head + blank * 96)  # 6 GiB decompressed
    assert f.stat().st_size < 300_000
    problems = Problems(limits=Limits(max_decompressed_bytes=128 << 20))
    tracemalloc.start()
    try:
        t = read_file(f, problems)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert {(r["trace_id"], r["span_id"]) for r in t.select(["trace_id", "span_id"]).to_pylist()} == {
        k for _, k in spans
    }
    assert dict(problems.skipped) == {"too_large": 1} and "max_decompressed_bytes" in problems.messages[0]
    assert peak < 600 << 20, f"peak {peak >> 20} MiB"


def test_attribute_nesting_past_max_depth_is_counted(tmp_path: Path) -> None:
    import random

    rng = random.Random(6)
    deep, _ = fz.otlp_span(rng, 0)
    deep["attributes"].append({"key": "a", "value": fz._nested_any(20)})
    ok, _ = fz.otlp_span(rng, 1)
    f = tmp_path / "d.jsonl"
    f.write_bytes(_line(deep, ok))
    problems = Problems(limits=Limits(max_depth=10))
    t = read_file(f, problems)
    assert t.num_rows == 1 and dict(problems.skipped) == {"too_deep": 1}
    assert read_file(f, Problems()).num_rows == 2  # within the default


# ---------------------------------------------------------------- ingest: catch-alls, outputs


def _good_folder(root: Path, n: int = 3) -> Path:
    import random

    rng = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"f{i}.jsonl").write_bytes(_line(*(fz.otlp_span(rng, j)[0] for j in range(4))) + b"\n")
    return root


def test_a_reader_bug_fails_one_record_never_the_file(tmp_path: Path, monkeypatch) -> None:
    src = _good_folder(tmp_path / "spans")
    real = otlp_dict._span

    def flaky(span, *args):
        if isinstance(span, dict) and span.get("name") == "ok-2":
            raise ZeroDivisionError("a bug")
        return real(span, *args)

    monkeypatch.setattr(otlp_dict, "_span", flaky)
    monkeypatch.setattr(formats, "_fast_json_lines", lambda *a: None)  # the Python reader reads all
    result = ingest([src], tmp_path / "run")
    assert result.spans == 9 and result.problems.skipped == {"unexpected_error": 3}
    assert "ZeroDivisionError: a bug" in result.problems.messages[0]


def test_a_reader_bug_or_an_unreadable_file_fails_that_file_never_the_run(
    tmp_path: Path, monkeypatch
) -> None:
    src = _good_folder(tmp_path / "spans", 5)
    # f0: not in the collector's spelling (the Python reader), whose read breaks as a whole
    (src / "f0.jsonl").write_bytes((src / "f0.jsonl").read_bytes().replace(b'"kind":', b'"kind":"2","k":'))
    monkeypatch.setattr(formats, "_json_lines_slow", _raise(RuntimeError("whole file")))
    # f1: the disk fails; f2: the reader fails outside read_bytes' own guard
    broken = {src / "f1.jsonl": OSError("disk gone"), src / "f2.jsonl": LookupError("a bug outside")}
    monkeypatch.setattr(ingest_mod, "read_file", _fail_on(broken, read_file))
    result = ingest([src], tmp_path / "run")
    report = json.loads((tmp_path / "run" / "ingest_report.json").read_text())
    assert result.spans == 8  # f3 and f4
    assert report["failed_files"] == [
        f"{src / 'f0.jsonl'}: reader error RuntimeError: whole file [unexpected_error]",
        f"{src / 'f1.jsonl'}: cannot read: disk gone [unreadable_file]",
        f"{src / 'f2.jsonl'}: reader error LookupError: a bug outside [unexpected_error]",
    ]


def test_span_rows_refuse_what_they_cannot_store_and_append_nothing() -> None:
    """The last gate: a value a reader let through is a BadRecord, never a table() that fails the file."""
    from hopscope.collector.errors import BadRecord
    from hopscope.collector.readers.rows import SpanRows

    ok = dict(
        trace_id="a" * 32,
        span_id="b" * 16,
        parent_span_id=None,
        links=[],
        name="n",
        kind="SERVER",
        start_ns=1,
        end_ns=2,
        status="UNSET",
        attributes={"k": "v"},
        resource={"service.name": "svc"},
    )
    bad = [
        ("trace_id", 5),
        ("span_id", "b" * 15),
        ("parent_span_id", ["x"]),
        ("links", [("a" * 32,)]),
        ("links", "x"),
        ("name", 5),
        ("kind", "SIDEWAYS"),
        ("status", None),
        ("start_ns", 1 << 63),
        ("start_ns", -1),
        ("end_ns", 0),
        ("start_ns", 1.5),
        ("attributes", {"k": 5}),
        ("attributes", {5: "v"}),
        ("attributes", 5),
        ("resource", {"service.name": 3}),
        ("resource", [("a",)]),
    ]
    rows = SpanRows("src", Problems())
    for field_name, value in bad:
        with pytest.raises(BadRecord):
            rows.add(**(ok | {field_name: value}))
        assert len(rows) == 0 and all(len(c) == 0 for c in rows.cols.values()), field_name
    rows.add(**ok)
    assert rows.table().num_rows == 1


def _raise(exc: Exception):
    def boom(*args, **kwargs):
        raise exc

    return boom


def _fail_on(broken: dict[Path, Exception], real):
    def read(f, problems, fmt=None):
        if Path(f) in broken:
            raise broken[Path(f)]
        return real(f, problems, fmt)

    return read


def test_an_unreadable_container_fails_only_its_file_with_one_line(tmp_path: Path) -> None:
    src = _good_folder(tmp_path / "spans", 1)
    (src / "noise.json").write_bytes(b"\x00\x01\x02 binary, not spans\n" * 20)
    (src / "pretty.json").write_bytes(b'{\n  "data": [\n  {"spans": \n')  # a broken document
    result = ingest([src], tmp_path / "run")
    report = json.loads((tmp_path / "run" / "ingest_report.json").read_text())
    assert result.spans == 4
    assert report["skipped"] == {"bad_json": 1, "unknown_format": 1}
    assert len(report["failed_files"]) == 2 and all("\n" not in m for m in report["failed_files"])
    assert report["failed_files"][0].startswith(
        f"{src / 'noise.json'}: neither JSON nor OTLP protobuf framing"
    )
    assert report["failed_files"][1].startswith(f"{src / 'pretty.json'}: not JSON")


def _outputs(run: Path) -> tuple[bytes | None, bytes | None, list[str]]:
    p, r = run / "spans.parquet", run / "ingest_report.json"
    leftovers = sorted(x.name for x in run.iterdir() if x.name.startswith("."))
    return (p.read_bytes() if p.exists() else None), (r.read_bytes() if r.exists() else None), leftovers


def test_a_failed_reingest_leaves_the_old_pair(tmp_path: Path, monkeypatch) -> None:
    src = _good_folder(tmp_path / "spans")
    run = tmp_path / "run"
    ingest([src], run)
    before = _outputs(run)
    assert before[0] is not None and json.loads(before[1])["spans"] == 12
    (src / "f1.jsonl").write_bytes(_line(fz.otlp_span(__import__("random").Random(1), 0)[0] | {"kind": "x"}))
    with pytest.raises(MalformedInput):
        ingest([src], run, strict=True)
    assert _outputs(run) == before and before[2] == []
    # a write that fails half way (a full disk): the same
    real = pq.ParquetWriter.write_table
    calls = []

    def full(self, table, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    with pytest.raises(OSError, match="No space"):
        ingest([src], run)
    assert _outputs(run) == before


def test_a_reingest_without_usable_spans_replaces_the_pair(tmp_path: Path) -> None:
    """The old spans.parquet must not stay beside a new report that says 0 spans."""
    src = _good_folder(tmp_path / "spans")
    run = tmp_path / "run"
    ingest([src], run)
    for f in src.iterdir():
        f.write_bytes(b"[1, 2]\n{}\n")
    with pytest.raises(NoUsableSpans):
        ingest([src], run)
    parquet, report, leftovers = _outputs(run)
    assert parquet is None and json.loads(report)["spans"] == 0 and leftovers == []


def test_the_report_never_describes_another_parquet(tmp_path: Path, monkeypatch) -> None:
    """A failure between the renames leaves the new spans.parquet without a report, never a stale report."""
    src = _good_folder(tmp_path / "spans")
    run = tmp_path / "run"
    ingest([src], run)
    (src / "f3.jsonl").write_bytes((src / "f0.jsonl").read_bytes())
    real = os.replace

    def crash_on_report(a, b):
        if str(b).endswith("ingest_report.json"):
            raise OSError("power cut")
        return real(a, b)

    monkeypatch.setattr(ingest_mod.os, "replace", crash_on_report)
    with pytest.raises(OSError, match="power cut"):
        ingest([src], run)
    _, report, leftovers = _outputs(run)
    assert report is None and pq.read_metadata(run / "spans.parquet").num_rows == 16 and leftovers == []


def test_fetch_traces_outputs_are_a_pair_too(tmp_path: Path) -> None:
    import pyarrow as pa

    from hopscope.core.schema import SPAN_SCHEMA

    run = tmp_path / "run"
    _good_folder(tmp_path / "spans", 1)
    table = read_bytes((tmp_path / "spans" / "f0.jsonl").read_bytes(), "http://x", Problems())
    ingest_mod.write_outputs(table, Problems(), run, files=1, t0=0.0)
    with pytest.raises(NoUsableSpans):
        ingest_mod.write_outputs(SPAN_SCHEMA.empty_table(), Problems(), run, files=1, t0=0.0)
    parquet, report, leftovers = _outputs(run)
    assert parquet is None and json.loads(report)["spans"] == 0 and leftovers == []
    assert isinstance(table, pa.Table)


def test_framed_zstd_record_with_a_bad_length_resyncs(tmp_path: Path) -> None:
    import random

    rng = random.Random(8)
    lines, keys = [], []
    for i in range(4):
        s, k = fz.otlp_span(rng, i)
        lines.append(_line(s))
        keys.append(k)
    cctx = zstandard.ZstdCompressor()
    recs = [cctx.compress(x) for x in lines]
    raw = b"".join(struct.pack(">I", 0x7FFFFFFF if i == 1 else len(c)) + c for i, c in enumerate(recs))
    f = tmp_path / "spans.jsonl.zst"
    f.write_bytes(raw)
    problems = Problems()
    t = read_file(f, problems)
    assert {(r["trace_id"], r["span_id"]) for r in t.select(["trace_id", "span_id"]).to_pylist()} == {
        keys[0],
        keys[2],
        keys[3],
    }
    assert dict(problems.skipped) == {"bad_frame": 1} and "resynced" in problems.messages[0]
