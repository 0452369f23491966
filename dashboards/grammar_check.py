"""Parse TraceQL and PromQL with Grafana's / Prometheus's own Lezer grammars (npm), in one node call.

The npm project in `dashboards/grammar/` is installed with `npm ci` into a
cache directory (never into the repo); a changed lock file re-installs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

GRAMMAR_DIR = Path(__file__).resolve().parent / "grammar"
FILES = ("package.json", "package-lock.json", "check.mjs")


class GrammarSetupError(RuntimeError):
    """node/npm missing or the install failed (the message says which command and why)."""


@dataclass(frozen=True)
class ParseResult:
    language: str
    query: str
    ok: bool
    error_offsets: tuple[int, ...]
    strict_error: str | None

    def describe(self) -> str:
        marks = ", ".join(f"{o}: …{self.query[max(0, o - 10) : o + 10]!r}" for o in self.error_offsets)
        return f"{self.language} {self.query!r}: error nodes at [{marks}], strict: {self.strict_error}"


def cache_dir() -> Path:
    base = os.environ.get("HOPSCOPE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "hopscope"
    )
    return Path(base) / "dashboards-grammar"


def ensure_installed(target: Path | None = None) -> Path:
    """Copy the npm project to the cache and `npm ci` it when its lock file changed."""
    target = target or cache_dir()
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise GrammarSetupError(
                f"`{tool}` is not on PATH; the grammar check needs Node.js (>= 18) and npm"
            )
    digest = hashlib.sha256(b"".join((GRAMMAR_DIR / f).read_bytes() for f in FILES)).hexdigest()
    stamp = target / ".installed"
    if stamp.exists() and stamp.read_text() == digest and (target / "node_modules").is_dir():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copyfile(GRAMMAR_DIR / f, target / f)
    proc = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise GrammarSetupError(
            f"`npm ci` in {target} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    stamp.write_text(digest)
    return target


def parse_all(items: list[tuple[str, str]], install_dir: Path | None = None) -> list[ParseResult]:
    """`items` = [(language, query)] with language "traceql" or "promql"; one node process for all."""
    where = ensure_installed(install_dir)
    payload = json.dumps([{"language": lang, "query": q} for lang, q in items])
    proc = subprocess.run(
        ["node", str(where / "check.mjs")],
        input=payload,
        capture_output=True,
        text=True,
        cwd=where,
        timeout=120,
    )
    if proc.returncode != 0:
        raise GrammarSetupError(
            f"node {where / 'check.mjs'} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    answers = json.loads(proc.stdout)
    if len(answers) != len(items):
        raise GrammarSetupError(f"node answered {len(answers)} results for {len(items)} queries")
    return [
        ParseResult(lang, q, bool(a["ok"]), tuple(a["errors"]), a["strict"])
        for (lang, q), a in zip(items, answers, strict=True)
    ]
