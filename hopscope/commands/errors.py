"""How every `hopscope` command fails: one line on stderr naming the file, field or option and
the reason, and an exit status of its own (`EXIT_*`, listed in the top-level README). A
traceback is shown only with `hopscope --debug …` (or HOPSCOPE_DEBUG=1).

One mechanism for every command: the app's group (`HopscopeGroup`) runs the command and turns
whatever it raises into that line; commands raise, they do not catch-and-print. Which exit status
an exception means is the table `KNOWN` (by class, looked up only in modules already imported)
plus: usage errors of the command line (2), `CliError` (its own status), OSError (1, naming the
path), anything else (70: a bug in hopscope, with the traceback under --debug).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

#: the command did what it was asked
EXIT_OK = 0
#: the work could not be done: an unusable run directory or input file, a write that failed, a
#: service that refused (Postgres, Grafana, a service that would not start), `--strict` findings
EXIT_FAILED = 1
#: the command line cannot work: a bad option or argument value (a `--out` that is a file, not
#: writable or too long; a garbage `--to-postgres` DSN; `--events 0`), an unknown stack, workload,
#: profile or service, a trace id or subscriber the run does not have, an invalid config file
EXIT_USAGE = 2
#: `bench`: the stack's preflight failed; no load was sent
EXIT_PREFLIGHT = 3
#: `bench`: the stack still holds an earlier run's work (not a clean start); refused
EXIT_NOT_CLEAN = 4
#: an error hopscope did not expect (a bug): the line names the exception, --debug shows where
EXIT_INTERNAL = 70
#: interrupted (Ctrl-C)
EXIT_INTERRUPTED = 130

#: the environment variable that turns --debug on
DEBUG_ENV = "HOPSCOPE_DEBUG"
#: an error line longer than this is cut (an exception may quote a huge value)
MAX_LINE = 2000

#: (module, exception class, exit status, how the line reads): the parts' own errors. Looked up
#: in sys.modules only (a module not imported raised nothing); the first match wins, so a
#: subclass comes before its base.
KNOWN: tuple[tuple[str, str, int, str], ...] = (
    ("hopscope.pipelines.clean_start", "NotCleanError", EXIT_NOT_CLEAN, "refused: {}"),
    ("hopscope.pipelines.driver", "PreflightError", EXIT_PREFLIGHT, "{} — no load was sent"),
    ("hopscope.pipelines.workload", "WorkloadError", EXIT_USAGE, "{}"),
    ("hopscope.pipelines.stack", "StackError", EXIT_USAGE, "{}"),
    ("hopscope.experiment.study", "ProfileError", EXIT_USAGE, "{}"),
    ("hopscope.deploy.config", "ConfigError", EXIT_USAGE, "{}"),
    ("hopscope.deploy.registry", "UnknownService", EXIT_FAILED, "{}"),
    ("hopscope.deploy.base", "DeployError", EXIT_FAILED, "{}"),
    ("hopscope.synth.config", "SynthConfigError", EXIT_USAGE, "{}"),
    ("hopscope.dashboards.results_target", "DsnError", EXIT_USAGE, "{}"),
    ("hopscope.dashboards.results_tables", "ResultsError", EXIT_FAILED, "{}"),
    ("hopscope.dashboards.publish", "PublishError", EXIT_FAILED, "publish failed: {}"),
    ("hopscope.collector.errors", "IngestError", EXIT_FAILED, "{}"),
    ("hopscope.analysis.mapping", "MappingError", EXIT_USAGE, "{}"),
    ("hopscope.analysis.run", "UnknownTrace", EXIT_USAGE, "{}"),
    ("hopscope.core.rundir", "RunDirError", EXIT_FAILED, "{}"),
)


#: the modules only an extra installs (pyproject.toml [project.optional-dependencies]) → what to
#: install; a command that needs a missing one fails with that one line, not as a bug (exit 70)
EXTRAS: dict[str, str] = {
    "grafana_client": "'hopscope[dashboards]'",
    "psycopg": "'hopscope[dashboards]' (analyze --to-postgres) or 'hopscope[services]' (up, run, bench)",
    "confluent_kafka": "'hopscope[services]'",
    "redis": "'hopscope[services]'",
    "aiomqtt": "'hopscope[services]'",
    "paho": "'hopscope[services]'",
    "opentelemetry.instrumentation": "'hopscope[services]'",
    "dask": "'hopscope[distributed]' (analyze --cluster / --workers)",
    "distributed": "'hopscope[distributed]' (analyze --cluster / --workers)",
    "ddsketch": "'hopscope[distributed]' (analyze --cluster / --workers)",
    "fsspec": "'hopscope[distributed]' (analyze --cluster / --workers)",
    "s3fs": "s3fs (s3:// inputs of analyze --cluster / --workers)",
}


def missing_extra(exc: BaseException) -> str | None:
    """The error line for an import of a module only an extra installs, else None."""
    name = exc.name if isinstance(exc, ModuleNotFoundError) else None
    for module, extra in EXTRAS.items():
        if name and (name == module or name.startswith(module + ".")):
            return f"{name} is not installed; this command needs it: pip install {extra}"
    return None


class CliError(Exception):
    """An error a command raises to fail with `exit_code` and this message."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageProblem(CliError):
    """An option or argument value that cannot work: `option: value: reason` (exit 2)."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        shown = str(value)
        if len(shown) > 120:
            shown = shown[:60] + "…" + shown[-40:]
        super().__init__(f"{option} {shown}: {reason}", EXIT_USAGE)


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """`text` on one line (its lines joined with " | "), at most `limit` characters."""
    line = " | ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} → {exc.filename2}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason


def classify(exc: BaseException) -> tuple[int, str]:
    """(exit status, message) for an exception a command raised."""
    if isinstance(exc, CliError):
        return exc.exit_code, str(exc)
    if isinstance(exc, (typer.BadParameter, *_usage_error_types())):
        return EXIT_USAGE, _usage_message(exc)
    for module, name, code, template in KNOWN:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return code, template.format(exc)
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return EXIT_FAILED, f"{_os_message(exc)} (disk full)"
        return EXIT_FAILED, _os_message(exc)
    if isinstance(exc, MemoryError):
        return EXIT_FAILED, "out of memory"
    extra = missing_extra(exc)
    if extra is not None:
        return EXIT_FAILED, extra
    text = str(exc)
    return EXIT_INTERNAL, (
        f"internal error: {type(exc).__name__}" + (f": {text}" if text else "") + f" (a bug: {DEBUG_HINT})"
    )


DEBUG_HINT = f"run with --debug or {DEBUG_ENV}=1 for the traceback"


def _usage_error_types() -> tuple[type, ...]:
    from typer._click.exceptions import UsageError

    return (UsageError,)


def _usage_message(exc: Any) -> str:
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{exc.format_message()}{hint}"


def debug_enabled(ctx: Any = None) -> bool:
    """--debug on the command line (the root context's `debug`), or HOPSCOPE_DEBUG set to
    anything but empty, 0, false or no."""
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def report(exc: BaseException, *, debug: bool, prefix: str = "") -> int:
    """Print the error line (after the traceback under --debug); returns the exit status."""
    try:
        code, message = classify(exc)
    except Exception:  # the handler must not fail in its turn
        code, message = EXIT_INTERNAL, f"internal error: {type(exc).__name__} ({DEBUG_HINT})"
    if debug and not isinstance(exc, (typer.BadParameter, *_usage_error_types())):
        # (the command line parser's usage errors have no traceback worth showing)
        traceback.print_exception(exc, file=sys.stderr)
    typer.echo(f"error: {prefix}{one_line(message)}", err=True)
    return code


def _passes_through(exc: BaseException) -> bool:
    """What typer itself handles: exits, aborts, Ctrl-C, the help shown for no arguments."""
    from typer._click.exceptions import NoArgsIsHelpError

    return isinstance(exc, typer.Exit | typer.Abort | KeyboardInterrupt | SystemExit | NoArgsIsHelpError)


class HopscopeGroup(TyperGroup):
    """The `hopscope` group: runs a command and turns what it raises into one line and an exit
    status; an exception left in a thread of the command fails it too (EXIT_INTERNAL) instead
    of printing a traceback and exiting 0."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except Exception as exc:  # the root's own options: `hopscope --bogus`
            if _passes_through(exc):
                raise
            raise typer.Exit(report(exc, debug=debug_enabled())) from None

    def invoke(self, ctx: Any) -> Any:
        debug = debug_enabled(ctx)
        thread_errors: list[BaseException] = []
        previous = threading.excepthook

        def thread_hook(args: threading.ExceptHookArgs) -> None:
            if args.exc_type is SystemExit or args.exc_value is None:
                return
            thread_errors.append(args.exc_value)
            name = args.thread.name if args.thread is not None else "?"
            report(args.exc_value, debug=debug, prefix=f"in thread {name}: ")

        threading.excepthook = thread_hook
        try:
            result = super().invoke(ctx)
        except Exception as exc:
            if _passes_through(exc):
                raise
            raise typer.Exit(report(exc, debug=debug)) from None
        finally:
            threading.excepthook = previous
        if thread_errors:
            raise typer.Exit(EXIT_INTERNAL)
        return result


# --- checks the commands share ------------------------------------------------------------------


def _too_long(path: Path) -> str | None:
    raw = os.fsencode(str(path))
    try:
        name_max = os.pathconf(_existing_parent(path), "PC_NAME_MAX")
        path_max = os.pathconf(_existing_parent(path), "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > name_max:
        return f"a path component is {longest} bytes long (at most {name_max})"
    if len(os.fsencode(str(path.absolute()))) >= path_max or len(raw) >= path_max:
        return f"the path is longer than {path_max - 1} bytes"
    return None


def _existing_parent(path: Path) -> str:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p if p.is_dir() else p.parent)


def writable_dir(path: Path, option: str = "--out", *, create: bool = True) -> Path:
    """`path` as a directory this process can write into, else a UsageProblem naming the option:
    a file in its place, a name too long, no permission. A directory that does not exist yet is
    made to try it and removed again (`create`; else it must exist): the command makes it when
    it writes."""
    if "\0" in str(path):
        raise UsageProblem(option, repr(str(path)), "contains a NUL byte")
    if reason := _too_long(path):
        raise UsageProblem(option, path, reason)
    if path.exists() and not path.is_dir():
        raise UsageProblem(option, path, "exists and is not a directory")
    made: list[Path] = []
    if not path.exists():
        if not create:
            raise UsageProblem(option, path, "no such directory")
        made = [p for p in (path, *path.absolute().parents) if not p.exists()]
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise UsageProblem(option, path, f"cannot be created ({exc.strerror or exc})") from None
    probe = path / f".hopscope-write-test-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageProblem(option, path, f"not writable ({exc.strerror or exc})") from None
    finally:
        for p in made:  # deepest first: only what was made here, and only while empty
            with contextlib.suppress(OSError):
                p.rmdir()
    return path
