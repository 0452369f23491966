"""Where `hopscope analyze --to-postgres` writes the results tables: the DSN (`deployed` =
hopscope's own Postgres, else a libpq DSN, else `HOPSCOPE_RESULTS_DSN`) and one call that
writes an analysed run there."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.services.postgres import Postgres

from .results_tables import AnalysisRun, ResultsError, write_results

#: the DSN that names hopscope's own Postgres (started by `hopscope up`)
DEPLOYED = "deployed"
#: the environment variable read when no DSN is given
DSN_ENV = "HOPSCOPE_RESULTS_DSN"


def results_dsn(dsn: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The libpq DSN to write to: `dsn`, else $HOPSCOPE_RESULTS_DSN, with `deployed` resolved to
    hopscope's own Postgres; None when neither names one."""
    env = os.environ if environ is None else environ
    chosen = dsn or env.get(DSN_ENV) or None
    if chosen == DEPLOYED:
        return Postgres(Context(load_config())).dsn()
    return chosen


class DsnError(ResultsError):
    """A DSN that is not one: libpq cannot parse it (the message names where it came from)."""


def check_dsn(dsn: str, where: str = "DSN") -> str:
    """`dsn` when libpq can parse it (a `key=value …` string or a postgresql:// URI), else a
    DsnError naming `where` (the DSN itself is not repeated: it may hold a password)."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except (psycopg.Error, ValueError, TypeError) as exc:
        raise DsnError(f"{where}: not a libpq connection string or URI ({str(exc).strip()})") from None
    return dsn


def describe(dsn: str) -> str:
    """host:port/dbname of a DSN (no password), for messages; `?` for what it does not say or
    for a DSN that does not parse."""
    try:
        where = psycopg.conninfo.conninfo_to_dict(dsn) if "=" in dsn or "://" in dsn else {}
    except (psycopg.Error, ValueError, TypeError):
        where = {}
    return f"{where.get('host', '?')}:{where.get('port', '5432')}/{where.get('dbname', '?')}"


def write_run_results(run: AnalysisRun, run_dir: Path, dsn: str) -> tuple[str, dict[str, int]]:
    """Replace the run's rows in the results tables; returns (run id, rows per table). The run id
    is the manifest's (`run.manifest`), else the directory's name. A Postgres that refuses is a
    ResultsError naming the target."""
    manifest = getattr(run, "manifest", None) or {}
    run_id = manifest.get("run_id") or run_dir.name
    try:
        written = write_results(run, dsn, run_id, run_dir=str(run_dir.resolve()))
    except psycopg.Error as e:
        raise ResultsError(
            f"writing results to Postgres {describe(dsn)} failed: {type(e).__name__}: {e}"
        ) from e
    return run_id, written
