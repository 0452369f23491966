"""`hopscope up/down/status` against real services: idempotence, clean stops, crash detection.

Named to run last: it stops and restarts Postgres and Redis, which the pipeline tests use.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import psutil
import pytest
from rich.console import Console
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.deploy.base import Context, PortInUse
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import down, status, up
from hopscope.deploy.registry import service_class


def _pids_of(ctx: Context, name: str) -> set[int]:
    svc = service_class(name)(ctx)
    pids = set()
    for info in svc.processes():
        if info.pid and info.alive:
            pids.add(info.pid)
            pids.update(c.pid for c in psutil.Process(info.pid).children(recursive=True))
    return pids


def test_second_up_is_a_no_op(deployed: Context) -> None:
    before = {name: _pids_of(deployed, name) for name in ("postgres", "redis")}
    timings = up(deployed, "postgres,redis", Console(quiet=True))
    assert {t.service: t.state for t in timings} == {
        "postgres": "already-running",
        "redis": "already-running",
    }
    assert all(t.install_s < 2.0 for t in timings), "a cached service was reinstalled"
    after = {name: _pids_of(deployed, name) for name in ("postgres", "redis")}
    assert before == after and all(before.values())


def test_down_leaves_no_process_and_up_restores(deployed: Context) -> None:
    pids = _pids_of(deployed, "redis") | _pids_of(deployed, "postgres")
    assert pids
    assert set(down(deployed, "postgres,redis")) == {"postgres", "redis"}
    time.sleep(0.2)
    left = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"processes left behind after down: {left}"
    states = {s.service: s.state for s in status(deployed, "postgres,redis")}
    assert states == {"postgres": "stopped", "redis": "stopped"}
    up(deployed, "postgres,redis", Console(quiet=True))
    states = {s.service: s.state for s in status(deployed, "postgres,redis")}
    assert states == {"postgres": "running", "redis": "running"}


def test_killed_service_shows_as_down(deployed: Context) -> None:
    (pid,) = [p.pid for p in service_class("redis")(deployed).processes()]
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(5) if psutil.pid_exists(pid) else None
    (row,) = status(deployed, "redis")
    assert row.state == "stopped"
    up(deployed, "redis", Console(quiet=True))
    (row,) = status(deployed, "redis")
    assert row.state == "running"


def test_taken_port_is_named(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = {"HOPSCOPE_STATE_DIR": str(tmp_path / "state"), "HOPSCOPE_REDIS__PORT": str(port)}
        ctx = Context(load_config(environ=env))
        with pytest.raises(PortInUse) as err:
            up(ctx, "redis", Console(quiet=True))
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and message.startswith("redis:")
    assert f"pid {os.getpid()}" in message


def test_status_json_reports_each_service(deployed: Context) -> None:
    result = CliRunner().invoke(app, ["status", "--json", "--only", "postgres,redis"])
    assert result.exit_code == 0, result.output
    rows = {r["service"]: r for r in json.loads(result.stdout)}
    for name in ("postgres", "redis"):
        assert rows[name]["state"] == "running"
        assert rows[name]["pids"] and rows[name]["rss_bytes"] > 1_000_000
        assert "127.0.0.1" in rows[name]["endpoint"]
    assert (
        "***" not in rows["postgres"]["endpoint"]
        and ":" not in rows["postgres"]["endpoint"].split("@")[0][13:]
    )
