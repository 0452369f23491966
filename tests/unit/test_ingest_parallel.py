"""Several files are read at once; spans, counts and messages come out as a one-by-one read gives them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_readers_malformed import line, span

from hopscope.collector import ingest as ingest_mod
from hopscope.collector.errors import MalformedInput


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "spans"
    d.mkdir()
    for f in range(4):
        lines = [line(*(span(100 * f + i + 1) for i in range(5)))]
        if f in (1, 3):
            lines.append(b'{"resourceSpans": [ {"resource": ')  # a broken line in two of the files
            lines.append(line(span(100 * f + 50, spanId="xyz")))  # a bad id: the slow path names it
        (d / f"spans-{f:03d}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return d


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_parallel_read_gives_the_sequential_result(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _folder(tmp_path)
    monkeypatch.setattr(ingest_mod, "READ_WORKERS", 1)
    one = ingest_mod.ingest([src], tmp_path / "one")
    monkeypatch.setattr(ingest_mod, "READ_WORKERS", workers)
    many = ingest_mod.ingest([src], tmp_path / "many")
    assert one.spans == many.spans == 20
    assert pq.read_table(one.out_dir / "spans.parquet").equals(pq.read_table(many.out_dir / "spans.parquet"))
    r1 = json.loads((one.out_dir / "ingest_report.json").read_text())
    r2 = json.loads((many.out_dir / "ingest_report.json").read_text())
    assert r1 == r2
    assert r1["skipped"] == {"bad_json": 2, "bad_id": 2}
    assert "spans-001.jsonl" in r1["errors"][0] and "spans-003.jsonl" in r1["errors"][-1]
    assert not list(many.out_dir.glob("*.partial"))


def test_strict_raises_the_first_problem_in_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _folder(tmp_path)
    monkeypatch.setattr(ingest_mod, "READ_WORKERS", 2)
    with pytest.raises(MalformedInput) as e:
        ingest_mod.ingest([src], tmp_path / "out", strict=True)
    assert "spans-001.jsonl" in str(e.value)
    assert not (tmp_path / "out" / "spans.parquet").exists()
    assert not list((tmp_path / "out").glob("*.partial"))
