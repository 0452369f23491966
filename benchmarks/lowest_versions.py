"""Install hopscope with the LOWEST numpy, pandas and pyarrow its pyproject.toml allows into a
fresh venv, and run the analysis unit tests there.

    .venv/bin/python benchmarks/lowest_versions.py              # a throwaway venv
    .venv/bin/python benchmarks/lowest_versions.py --keep /tmp/vlow

The lower bounds are read from pyproject.toml (`numpy>=…`), so the figures printed are the
ones a user may get; the rest resolves from PyPI as for a user (no constraints.txt), and no
extra but `dev` is installed: the tests then also show that the analysis imports nothing of
`hopscope[services]` or `hopscope[dashboards]`. The native extensions are left out
(HOPSCOPE_BUILD_NATIVE=0, cargo off PATH): the Python paths are the ones that lean on these
libraries' APIs, and a build would add minutes. Needs PyPI; prints what it installed and the
pytest summary; exits with pytest's status. tests/unit/test_install.py runs it when
HOPSCOPE_LOWEST_VERSIONS=1 (docs/decisions.md D16).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINNED = ("numpy", "pandas", "pyarrow")
#: the analysis tests: statistics, critical paths, hops, folding, quality, verdicts, the report
#: (also through `hopscope analyze`), the readers' paths and the synthetic runs (~40 s here)
TESTS = (
    "test_stats.py",
    "test_critical_path_vectorised.py",
    "test_hops.py",
    "test_fold.py",
    "test_quality.py",
    "test_verdicts.py",
    "test_report.py",
    "test_report_synth.py",
    "test_spans_fast_path.py",
    "test_readers_roundtrip.py",
    "test_synth.py",
    "test_analysis_kernels.py",
)
#: must stay uninstalled: the extras' packages (the import split is part of what is tested)
NOT_INSTALLED = ("psycopg", "confluent-kafka", "redis", "aiomqtt", "grafana-client")


def lower_bounds(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """{name: lowest allowed version} of numpy, pandas and pyarrow in pyproject.toml."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    found: dict[str, str] = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)(?:,.*)?", dep.strip())
        if m and m.group(1).lower() in PINNED:
            found[m.group(1).lower()] = m.group(2)
    missing = [name for name in PINNED if name not in found]
    if missing:
        raise SystemExit(f"pyproject.toml: no `>=` lower bound for {', '.join(missing)}")
    return found


def _no_cargo_path() -> str:
    """PATH without the folders that hold cargo: the tests then skip the native comparisons
    instead of failing on an extension this install left out on purpose."""
    cargo = shutil.which("cargo")
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    drop = {str(Path(cargo).parent)} if cargo else set()
    return os.pathsep.join(d for d in dirs if d not in drop and not d.rstrip("/").endswith(".cargo/bin"))


def _installed(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], check=True, capture_output=True, text=True
    ).stdout
    return {row["name"].lower(): row["version"] for row in json.loads(out)}


def run(venv: Path, python_exe: str) -> int:
    bounds = lower_bounds()
    env = {**os.environ, "HOPSCOPE_BUILD_NATIVE": "0", "PATH": _no_cargo_path()}
    env.pop("PIP_CONSTRAINT", None)
    t0 = time.monotonic()
    if not (venv / "bin" / "python").exists():
        subprocess.run([python_exe, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pins = [f"{name}=={version}" for name, version in bounds.items()]
    print(f"installing hopscope[dev] with {', '.join(pins)} into {venv}", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]", *pins],
        check=True,
        env=env,
        cwd=ROOT,
    )
    t_install = time.monotonic() - t0
    have = _installed(python)
    print(f"installed in {t_install:.0f} s: " + ", ".join(f"{n} {have.get(n, '?')}" for n in PINNED))
    print("  with: " + ", ".join(f"{n} {have[n]}" for n in ("plotly", "networkx", "pydantic") if n in have))
    wrong = [n for n in PINNED if have.get(n) != bounds[n]]
    extras = [n for n in NOT_INSTALLED if n in have]
    if wrong or extras:
        print(f"FAILED: not the lowest versions: {wrong}; extras' packages installed: {extras}")
        return 1
    t1 = time.monotonic()
    proc = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *(f"tests/unit/{t}" for t in TESTS)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0:
        print("\n".join(lines[-60:]))
    print(
        f"pytest ({len(TESTS)} files, {time.monotonic() - t1:.0f} s): {lines[-1] if lines else proc.stderr}"
    )
    return proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, help="create (or reuse) the venv here and keep it")
    ap.add_argument("--python", default=shutil.which("python3.11") or sys.executable, help="the interpreter")
    args = ap.parse_args()
    if args.keep:
        return run(args.keep.resolve(), args.python)
    with tempfile.TemporaryDirectory(prefix="hopscope-lowest-") as tmp:
        return run(Path(tmp) / "venv", args.python)


if __name__ == "__main__":
    sys.exit(main())
