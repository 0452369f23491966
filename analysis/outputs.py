"""Writing the analysis' files all or nothing: into a folder of their own inside the run
directory, then each moved into place with one rename, so a failed analysis leaves the earlier
one's files as they were instead of a mix of old and new."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

#: the prefix of the folders (and files) written before they are moved into place
STAGING_PREFIX = ".hopscope-staging-"


@contextlib.contextmanager
def staged_outputs(out_dir: Path, *, stale: Sequence[str] = (), last: Sequence[str] = ()) -> Iterator[Path]:
    """A fresh folder inside `out_dir` to write into. When the block ends without an error its
    files are moved into `out_dir` (those named in `last` after the others: a reader that sees
    the report sees the tables it was made from), and the files matching the `stale` patterns that
    this time's set lacks are removed; when it raises, the folder goes and `out_dir` is untouched."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        yield tmp
        names = sorted(os.listdir(tmp), key=lambda n: (n in last, n))
        for pattern in stale:
            for old in out_dir.glob(pattern):
                if old.name not in names and old.is_file():
                    old.unlink()
        for name in names:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed to `path` when the block succeeds,
    removed when it raises."""
    path = Path(path)
    # a fresh name, not mkstemp's file: the writer creates it with the usual permissions
    tmp = path.with_name(f"{STAGING_PREFIX}{secrets.token_hex(6)}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
