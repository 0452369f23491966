"""Real services for integration tests: started once per test session, never faked.

`deployed` runs `hopscope up` for every implemented service (installs are
cached, running services are only health-checked) and hands out the Context.
Nothing is torn down here: `bin/test` runs `hopscope down` when the session ends,
so a developer can keep services up between runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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


@pytest.fixture(scope="session")
def edges_in_prometheus() -> Callable[..., set[tuple[str, str, str]]]:
    """`wait(run_id, expected)`: the (client, server, connection_type) edges Prometheus holds
    for a run, once they include `expected` (or after `timeout_s`): the collector flushes its
    edge series every few seconds and Prometheus scrapes every 5 s."""
    from hopscope.dashboards.metrics import GRAPH_REQUESTS
    from hopscope.deploy.services.prometheus import Prometheus

    ctx = Context(load_config())
    up(ctx, "prometheus", Console(stderr=True))
    prom = Prometheus(ctx)

    def wait(
        run_id: str, expected: set[tuple[str, str, str]], timeout_s: float = 60.0
    ) -> set[tuple[str, str, str]]:
        promql = f'sum by (client, server, connection_type) ({GRAPH_REQUESTS}{{hopscope_run_id="{run_id}"}})'
        deadline = time.monotonic() + timeout_s
        while True:
            got = {
                (r["metric"]["client"], r["metric"]["server"], r["metric"].get("connection_type", ""))
                for r in prom.query(promql)
            }
            if got >= expected or time.monotonic() > deadline:
                return got
            time.sleep(3)

    return wait
