"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's `shared/` folder: beside the clone (CI and developers), or $HOPSCOPE_SHARED."""
    candidates = [Path(os.environ["HOPSCOPE_SHARED"])] if "HOPSCOPE_SHARED" in os.environ else []
    candidates += [REPO.parent / "shared", REPO / "shared"]
    for path in candidates:
        if (path / "conformance").is_dir():
            return path
    pytest.fail(f"shared/ with conformance cases not found; looked in {[str(c) for c in candidates]}")
