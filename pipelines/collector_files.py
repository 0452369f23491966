"""Where the running collector writes a run's span files, and bringing them into a run directory.

The collector writes every run's spans to `<runs_root>/<run id>/spans/` (its file exporter
groups by the `hopscope.run_id` resource attribute). A run directory elsewhere gets its spans
by moving those files in: a rename keeps the collector's open handle valid, so a late span
still lands in the moved file.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from hopscope.core.rundir import SPANS_DIR
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config


def collector_runs_root() -> Path | None:
    """Where the running collector writes `<run id>/spans/`: read from its rendered config
    (the path it really uses), else from our configuration; None without a deploy config."""
    try:
        ctx = Context(load_config())
        conf = ctx.service_dir("collector") / "config.yaml"
        if conf.exists():
            m = re.search(rf"path:\s*['\"]?(\S+?)/\*/{SPANS_DIR}/", conf.read_text())
            if m:
                return Path(m.group(1))
        return ctx.config.collector.runs_root.resolve()
    except Exception:  # no deploy config: nothing to gather from
        return None


def writes_into(runs_root: Path | None, run_dir: Path) -> bool:
    """Whether the collector already writes this run directory's spans in place (the run
    directory is `<runs_root>/<its name>`)."""
    return runs_root is not None and run_dir.resolve().parent == runs_root.resolve()


#: How long the span files must stay unchanged before a run's spans count as written. The
#: Java services (Kafka Connect with Debezium, Kafka Streams) export through the OpenTelemetry
#: agent's batch processor, every 5 s by default; the collector batches for 0.2 s and its file
#: exporter flushes every 1 s. A shorter settle can return between two of the agent's exports,
#: and an `analyze` right after would miss the Java hops of the last events.
EXPORT_SETTLE_S = 7.0


def wait_until_written(src: Path, settle_s: float = EXPORT_SETTLE_S, timeout_s: float = 60.0) -> None:
    """Wait until the collector's files in `src` exist and have not grown for `settle_s`, at
    most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = sum(f.stat().st_size for f in src.glob("*") if f.is_file()) if src.is_dir() else 0
        if size != last:
            last, since = size, time.monotonic()
        elif size > 0 and time.monotonic() - since >= settle_s:
            return
        time.sleep(0.25)


def move_spans(runs_root: Path, run_id: str, dst: Path) -> int:
    """Move the run's span files from the collector's runs root into `dst`; the number moved.
    The collector's emptied folders are removed (no litter in its runs root)."""
    src = runs_root / run_id / SPANS_DIR
    if not src.is_dir() or src.resolve() == dst.resolve():
        return 0
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted(src.iterdir()):
        if f.is_file():
            shutil.move(str(f), _free_name(dst, f.name))
            n += 1
    for d in (src, src.parent):
        try:
            d.rmdir()
        except OSError:
            break
    return n


def _free_name(dst: Path, name: str) -> Path:
    """`dst/name`, or `dst/<stem>.<k><suffix>` when a file of that name is already there: a
    second gathering (spans the collector wrote after the first, into a new file of the same
    name) must never overwrite the first."""
    target, stem, suffix = dst / name, Path(name).stem, Path(name).suffix
    k = 1
    while target.exists():
        target, k = dst / f"{stem}.{k}{suffix}", k + 1
    return target
