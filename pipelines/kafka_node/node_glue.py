"""Install (once per source version) the Node.js glue and say how to start it.

`glue/` holds the sources with `package.json` and `package-lock.json`; node_modules is never
committed. The first use copies the sources to `<hopscope cache>/kafka-node-glue/<source hash>/`
and runs `npm ci` there (the lock's exact versions, from the npm registry only): a change to
any source file or the lock gives a new hash and one new install, as the Streams app's jar.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent / "glue"
#: what the installed copy holds (tests and node_modules stay behind)
SOURCES = ("package.json", "package-lock.json", "main.js", "src/*.js")
ENTRY = "main.js"
#: the oldest Node.js the glue runs on (its packages declare engines >= 20)
MIN_NODE_MAJOR = 20
_INSTALLED = ".installed"


class NodeGlueError(RuntimeError):
    """Node.js or npm is missing, or the install failed; the message says which and where."""


def source_files(source_dir: Path = SOURCE_DIR) -> list[Path]:
    return sorted({p for pattern in SOURCES for p in source_dir.glob(pattern) if p.is_file()})


def source_hash(source_dir: Path = SOURCE_DIR) -> str:
    h = hashlib.sha256()
    for path in source_files(source_dir):
        h.update(str(path.relative_to(source_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def check_node() -> str:
    """`node` and `npm` on PATH, Node.js new enough; returns node's version."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise NodeGlueError(
            f"the kafka-node stack's glue needs {' and '.join(missing)} on PATH "
            f"(Node.js >= {MIN_NODE_MAJOR} with npm)"
        )
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False, timeout=30)
    version = out.stdout.strip()
    match = re.fullmatch(r"v(\d+)\..*", version)
    if out.returncode != 0 or match is None:
        raise NodeGlueError(f"`node --version` failed (exit {out.returncode}): {out.stderr.strip()[:200]}")
    if int(match.group(1)) < MIN_NODE_MAJOR:
        raise NodeGlueError(f"the kafka-node glue needs Node.js >= {MIN_NODE_MAJOR}, found {version}")
    return version


def install_dir(cache_dir: Path, source_dir: Path = SOURCE_DIR) -> Path:
    return cache_dir / "kafka-node-glue" / source_hash(source_dir)


def ensure_installed(cache_dir: Path, source_dir: Path = SOURCE_DIR) -> Path:
    """The installed glue for the current sources (its folder), installing it if needed."""
    out = install_dir(cache_dir, source_dir)
    if (out / _INSTALLED).is_file():
        return out
    check_node()
    out.parent.mkdir(parents=True, exist_ok=True)
    # two benches starting at once must not run npm in one folder
    with (out.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / _INSTALLED).is_file():
            return out
        _install(source_dir, out)
    return out


def _install(source_dir: Path, out: Path) -> None:
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for path in source_files(source_dir):
        dest = staging / path.relative_to(source_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    log = out.parent / f"{out.name}-npm-ci.log"
    argv = ["npm", "ci", "--no-audit", "--no-fund", "--omit=dev"]
    with log.open("w") as fh:
        proc = subprocess.run(argv, cwd=staging, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-6:])
        raise NodeGlueError(
            f"`{' '.join(argv)}` for the kafka-node glue exited {proc.returncode}: {tail} (log: {log})"
        )
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    (out / _INSTALLED).write_text(source_hash(source_dir) + "\n")


def command(installed: Path, role: str) -> list[str]:
    return ["node", str(installed / ENTRY), role]
