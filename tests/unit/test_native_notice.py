"""Without the native extensions hopscope says once, on one stderr line, that it runs the
slower fallback (core/native.py); HOPSCOPE_NATIVE=0 (on purpose) says nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hopscope.core import native

_SCRIPT = """
import sys
sys.modules["hopscope_otlp_native"] = None  # as if not installed: the import fails
sys.modules["hopscope_analysis_native"] = None
from hopscope.analysis import id_index
from hopscope.collector.readers import otlp_native
assert not otlp_native.AVAILABLE
for _ in range(3):
    otlp_native.fallback()
    id_index._native_index({})
print("done")
"""


def _run(env_native: str | None) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != native.NATIVE_ENV}
    if env_native is not None:
        env[native.NATIVE_ENV] = env_native
    return subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env)


def test_the_fallback_is_announced_once_on_one_line() -> None:
    proc = _run(None)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("hopscope:")]
    assert len(lines) == 1, proc.stderr
    assert "hopscope_otlp_native" in lines[0] and "hopscope_analysis_native" in lines[0]
    assert "slower Python fallback" in lines[0]


def test_turned_off_on_purpose_says_nothing() -> None:
    proc = _run("0")
    assert proc.returncode == 0, proc.stderr
    assert "hopscope:" not in proc.stderr


def test_note_fallback_prints_at_most_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(native, "_noticed", False)
    monkeypatch.delenv(native.NATIVE_ENV, raising=False)
    assert native.note_fallback() is True
    assert native.note_fallback() is False
    assert capsys.readouterr().err.count("hopscope:") == 1
