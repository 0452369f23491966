"""How hopscope installs (docs/decisions.md D16). hopscope with the lowest numpy, pandas and pyarrow pyproject.toml allows passes the analysis
tests (benchmarks/lowest_versions.py: a fresh venv from PyPI, ~3 minutes on 2 cores), and the
lock, the ranges and the extras stay consistent (fast, always)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_runtime_dependencies_are_ranges_and_the_lock_satisfies_them() -> None:
    from packaging.requirements import Requirement

    lock = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            lock[_name(name)] = version.strip()
    project = _project()
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in ("services", "dashboards"):
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    for req in reqs:
        # the one exact pin: the version epoch is a timestamp, a range would pick the wrong schema
        if req.name != "grafana-foundation-sdk":
            assert not any(s.operator == "==" for s in req.specifier), f"{req} is pinned, not a range"
        assert _name(req.name) in lock, f"{req.name} is not locked in constraints.txt"
        assert req.specifier.contains(lock[_name(req.name)], prereleases=True), (
            f"constraints.txt {req.name}=={lock[_name(req.name)]} is outside {req}"
        )
    assert project["requires-python"] == ">=3.11"
    assert not {"duckdb", "websockets"} & {_name(r) for r in project["dependencies"]}


def test_the_results_dsn_variable_is_spelled_alike() -> None:
    from hopscope.commands.analyze import RESULTS_DSN_ENV
    from hopscope.dashboards.results_target import DSN_ENV

    assert RESULTS_DSN_ENV == DSN_ENV


def test_a_missing_extra_is_one_line_naming_it() -> None:
    from hopscope.commands.errors import EXIT_FAILED, classify

    code, line = classify(ModuleNotFoundError("No module named 'grafana_client'", name="grafana_client"))
    assert code == EXIT_FAILED
    assert "pip install 'hopscope[dashboards]'" in line
    code, line = classify(
        ModuleNotFoundError("No module named 'confluent_kafka'", name="confluent_kafka.admin")
    )
    assert "hopscope[services]" in line
    assert classify(ModuleNotFoundError("x", name="nothing_of_ours"))[0] != EXIT_FAILED


def test_publish_without_grafana_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from hopscope.dashboards import publish

    monkeypatch.setitem(sys.modules, "grafana_client", None)
    with pytest.raises(ModuleNotFoundError, match=r"hopscope\[dashboards\]"):
        publish.connect("http://127.0.0.1:1", None)


@pytest.mark.skipif(
    os.environ.get("HOPSCOPE_LOWEST_VERSIONS") != "1",
    reason="installs from PyPI into a fresh venv (~3 min): set HOPSCOPE_LOWEST_VERSIONS=1",
)
def test_analysis_passes_with_the_lowest_numpy_pandas_pyarrow() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "lowest_versions.py")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout
