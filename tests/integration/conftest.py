"""Real services for integration tests: started once per test session, never faked.

`deployed` runs `hopscope up` for every implemented service (installs are
cached, running services are only health-checked) and hands out the Context.
Nothing is torn down here: `bin/test` runs `hopscope down` when the session ends,
so a developer can keep services up between runs.
"""

from __future__ import annotations

import pytest
from rich.console import Console

from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import up

_FAILED: list[BaseException] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def deployed() -> Context:
    if _FAILED:
        pytest.fail(f"services did not come up: {_FAILED[0]}")
    ctx = Context(load_config())
    try:
        up(ctx, None, Console(stderr=True))
    except Exception as exc:
        _FAILED.append(exc)
        raise
    return ctx
