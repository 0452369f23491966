"""The one notice that a native extension is missing and the slower Python path runs.

The native span readers (`hopscope_otlp_native`, collector/native) and analysis kernels
(`hopscope_analysis_native`, analysis/native) are built by the package's own build where a
Rust toolchain is found (setup.py; bin/bootstrap builds them for the project's venv) and left
out where none is: the install still works, only slower. A user should know that without
reading the install log, so the first fallback of a process prints one line on stderr; the
second part to fall back says nothing more (one line, not one per part or per file).
`HOPSCOPE_NATIVE=0` (a deliberate comparison) prints nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading

#: turns the native paths off on purpose (benchmarks, comparisons); then no notice
NATIVE_ENV = "HOPSCOPE_NATIVE"

_lock = threading.Lock()
_noticed = False


def turned_off() -> bool:
    """Whether HOPSCOPE_NATIVE=0 turns the native paths off for this process."""
    return os.environ.get(NATIVE_ENV, "1") == "0"


#: the extension modules (setup.py) → what they speed up, as the notice names them
MODULES = {
    "hopscope_otlp_native": "span readers",
    "hopscope_analysis_native": "analysis kernels",
}


def missing() -> list[str]:
    """The extension modules that are not installed."""
    return [name for name in MODULES if not _importable(name)]


def _importable(name: str) -> bool:
    if name in sys.modules:  # imported already, or None: an import that failed (or was barred)
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def note_fallback() -> bool:
    """Say once per process that a slower Python path runs because a native extension is not
    installed (naming every missing one, so a second fallback has nothing to add); returns
    whether this call printed the line."""
    global _noticed
    if _noticed or turned_off():
        return False
    with _lock:
        if _noticed:
            return False
        _noticed = True
    gone = missing()
    what = " and ".join(f"native {MODULES[name]} ({name})" for name in gone) or "a native extension"
    print(
        f"hopscope: the {what} {'are' if len(gone) > 1 else 'is'} not installed (no Rust toolchain "
        "when hopscope was installed): using the slower Python fallback; reinstall with cargo on PATH "
        "for the fast paths",
        file=sys.stderr,
        flush=True,
    )
    return True
