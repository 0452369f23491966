"""The layout's rules, read from the source: which part may import which, no import circles,
no imports below the code.

Data flows one way (loadgen → pipelines → collector → analysis → report/dashboards); the floor
(`hopscope.core`) imports nothing of ours; only the command layer imports everything. The
rules are checked on every import statement, call-time imports included.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2]

#: part -> the parts it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "instrumentation": {"core"},
    "collector": {"core"},
    "deploy": {"core"},
    "analysis": {"core"},
    "synth": {"core", "instrumentation", "collector"},
    "pipelines": {"core", "instrumentation", "deploy"},
    "dashboards": {"core", "analysis", "deploy"},
    "experiment": {"core", "instrumentation", "collector", "analysis", "pipelines", "deploy"},
    "commands": {
        "core", "instrumentation", "collector", "deploy", "analysis", "synth", "pipelines",
        "dashboards", "experiment",
    },
}  # fmt: skip


@dataclass(frozen=True)
class Module:
    name: str  # hopscope.analysis.run
    path: Path
    is_package: bool

    @property
    def part(self) -> str:
        return part_of(self.name)


#: the Rust extensions (analysis/native, collector/native) belong to the part that builds them
NATIVE = {"hopscope_analysis_native": "analysis", "hopscope_otlp_native": "collector"}


def part_of(module: str) -> str:
    if module in NATIVE:
        return NATIVE[module]
    pieces = module.split(".")
    if len(pieces) == 1 or pieces[1] in ("cli", "commands", "__main__"):
        return "commands"
    return pieces[1]


def package_dirs() -> dict[str, Path]:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {pkg: ROOT / folder for pkg, folder in conf["tool"]["setuptools"]["package-dir"].items()}


def our_modules() -> dict[str, Module]:
    out: dict[str, Module] = {}
    roots = package_dirs()
    for pkg, folder in roots.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder)
            if any(p.startswith(".") or p in ("target", "node_modules") for p in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            dotted = ".".join([pkg, *parts])
            is_package = parts[-1] == "__init__"
            name = ".".join([pkg, *parts[:-1]]) if is_package else dotted
            out[name] = Module(name, path, is_package)
    return out


def imports_of(mod: Module, known: dict[str, Module]) -> list[tuple[str, int]]:
    """(imported module, line) for every import of ours in the file, at any depth."""
    tree = ast.parse(mod.path.read_text(), filename=str(mod.path))
    package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("hopscope")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("hopscope"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in known else target, node.lineno))
    return found


def late_imports(mod: Module) -> list[int]:
    """Module-level imports that come after a def or class (a bottom-of-file import)."""
    tree = ast.parse(mod.path.read_text())
    seen_code = False
    late = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            seen_code = True
        elif isinstance(node, ast.Import | ast.ImportFrom) and seen_code:
            late.append(node.lineno)
    return late


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    mods = our_modules()
    assert len(mods) > 50, "the layout walk found too few modules: pyproject's package-dir changed?"
    return mods


def test_every_part_imports_only_what_the_layout_allows(modules: dict[str, Module]) -> None:
    broken = []
    for mod in modules.values():
        assert mod.part in ALLOWED, f"{mod.path}: part {mod.part!r} has no import rule"
        for target, line in imports_of(mod, modules):
            other = part_of(target)
            if other != mod.part and other not in ALLOWED[mod.part]:
                broken.append(f"{mod.path.relative_to(ROOT)}:{line}: {mod.part} imports {target}")
    assert not broken, "imports against the layout's rules:\n" + "\n".join(sorted(broken))


def test_no_import_circles(modules: dict[str, Module]) -> None:
    graph = nx.DiGraph()
    for mod in modules.values():
        for target, _ in imports_of(mod, modules):
            if target in modules and target != mod.name:
                graph.add_edge(mod.name, target)
    cycles = [c for c in nx.simple_cycles(graph) if not _package_and_child(c)]
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in cycles[:20])


def _package_and_child(cycle: list[str]) -> bool:
    # `pkg/__init__` re-exporting `pkg.sub` while `pkg.sub` imports a sibling through `pkg` is
    # one module's own package, not a circle between modules
    return len(cycle) == 2 and (cycle[0].startswith(cycle[1] + ".") or cycle[1].startswith(cycle[0] + "."))


def test_no_imports_below_the_code(modules: dict[str, Module]) -> None:
    late = [f"{m.path.relative_to(ROOT)}:{line}" for m in modules.values() for line in late_imports(m)]
    assert not late, "module-level imports after a def or class:\n" + "\n".join(late)


def test_the_rules_catch_a_forbidden_import(tmp_path: Path, modules: dict[str, Module]) -> None:
    """The checker itself: an analysis module importing deploy is reported, a relative import resolved."""
    fake = tmp_path / "bad.py"
    fake.write_text("from hopscope.deploy.config import load_config\nfrom ..core import schema\n")
    mod = Module("hopscope.analysis.report.bad", fake, False)
    targets = [t for t, _ in imports_of(mod, modules)]
    assert targets == ["hopscope.deploy.config", "hopscope.analysis.core"]
    assert part_of(targets[0]) not in ALLOWED["analysis"]
    late = tmp_path / "late.py"
    late.write_text("import os\n\ndef f():\n    pass\n\nfrom hopscope.core import schema\n")
    assert late_imports(Module("hopscope.analysis.late", late, False)) == [6]


def floor_literals() -> set[str]:
    """The names only the floor spells: run-directory files, the root span, the wait prefix."""
    from hopscope.core import attributes, rundir

    names = {attributes.WAIT_PREFIX, attributes.LOADGEN_SPAN_NAME}
    names |= {v for k, v in vars(rundir).items() if k.isupper() and isinstance(v, str) and "." in v}
    return names


def spelled_literals(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """String constants (docstrings aside) that are, or start with, one of `names`."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and any(node.value == n or node.value.startswith(n) for n in names)
    ]


def test_only_the_floor_spells_run_files_and_span_names(modules: dict[str, Module]) -> None:
    names = floor_literals()
    assert {"manifest.json", "ledger.parquet", "spans.parquet", "wait:", "loadgen.send"} <= names
    found = [
        f"{m.path.relative_to(ROOT)}:{line}: {value!r}"
        for m in modules.values()
        if m.part != "core"
        for line, value in spelled_literals(m.path, names)
    ]
    assert not found, "spelled outside hopscope.core (use its constants):\n" + "\n".join(sorted(found))
