"""Moving a run's span files out of the collector's runs root (pipelines/collector_files.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from hopscope.core.rundir import SPANS_DIR
from hopscope.pipelines.collector_files import move_spans, wait_until_written, writes_into


def test_spans_move_into_the_run_directory_and_the_collectors_folder_goes(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    src = root / "bench-x-1" / SPANS_DIR
    src.mkdir(parents=True)
    (src / "spans-1.jsonl").write_text("a\n")
    (src / "spans-2.jsonl").write_text("b\n")
    handle = (src / "spans-2.jsonl").open("a")  # the collector's open file
    dst = tmp_path / "elsewhere" / "x" / SPANS_DIR
    assert move_spans(root, "bench-x-1", dst) == 2
    handle.write("late\n")  # a late span lands in the moved file
    handle.close()
    assert (dst / "spans-2.jsonl").read_text() == "b\nlate\n"
    assert not (root / "bench-x-1").exists() and root.is_dir()
    assert move_spans(root, "bench-x-1", dst) == 0  # nothing left: nothing moved, no error


def test_writes_into_only_a_direct_child_of_the_runs_root(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    assert writes_into(root, root / "r1")
    assert not writes_into(root, tmp_path / "a" / "r1")
    assert not writes_into(root, root / "a" / "r1")
    assert not writes_into(None, root / "r1")


def test_wait_until_written_returns_once_the_files_stop_growing(tmp_path: Path) -> None:
    src = tmp_path / SPANS_DIR
    src.mkdir()
    f = src / "spans.jsonl"

    def writer() -> None:
        for _ in range(4):
            with f.open("a") as out:
                out.write("x" * 100 + "\n")
            time.sleep(0.3)

    t = threading.Thread(target=writer)
    t0 = time.monotonic()
    t.start()
    wait_until_written(src, settle_s=0.5, timeout_s=10.0)
    size_at_return = f.stat().st_size  # before join: what the wait saw, not what came later
    t.join()
    assert size_at_return == 4 * 101  # waited for the last write
    assert time.monotonic() - t0 < 5.0
    t0 = time.monotonic()
    wait_until_written(tmp_path / "never", settle_s=0.1, timeout_s=0.5)  # no files: gives up
    assert 0.4 < time.monotonic() - t0 < 2.0


def test_a_second_gathering_never_overwrites_the_first(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    dst = tmp_path / "elsewhere" / SPANS_DIR
    for content in ("first\n", "late\n", "later\n"):
        src = root / "bench-x-1" / SPANS_DIR
        src.mkdir(parents=True)
        (src / "spans.jsonl").write_text(content)  # the collector reopened the same name
        assert move_spans(root, "bench-x-1", dst) == 1
    texts = sorted(p.read_text() for p in dst.iterdir())
    assert texts == ["first\n", "late\n", "later\n"]
    assert sorted(p.name for p in dst.iterdir()) == ["spans.1.jsonl", "spans.2.jsonl", "spans.jsonl"]
