"""up / down / status over a set of services, with timings for the figures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console

from hopscope.deploy.base import Context, DeployError, Service, ServiceStatus, wait_until
from hopscope.deploy.config import load_config
from hopscope.deploy.registry import instantiate, resolve, service_class

NOT_RUNNING = "not running"


@dataclass
class StepTiming:
    service: str
    install_s: float
    start_s: float
    state: str  # started | already-running | external


def up(ctx: Context, only: str | None = None, console: Console | None = None) -> list[StepTiming]:
    """Install what is missing, start what is not running, and wait for every health check."""
    console = console or Console(stderr=True)
    timings = []
    for svc in instantiate(resolve(only), ctx):
        timings.append(_up_one(svc, console))
    return timings


def _up_one(svc: Service, console: Console) -> StepTiming:
    if svc.is_external():
        with console.status(f"[bold]{svc.name}[/]: checking external {svc.endpoint()}"):
            svc.health()
        console.print(f"  [green]✓[/] {svc.name:<11} external  {svc.endpoint()}")
        return StepTiming(svc.name, 0.0, 0.0, "external")
    t0 = time.monotonic()
    if not svc.is_installed():
        with console.status(f"[bold]{svc.name}[/]: installing"):
            svc.install()
    install_s = time.monotonic() - t0
    if svc.running():
        with console.status(f"[bold]{svc.name}[/]: already running, checking"):
            # It may be running but still starting (another `up` launched it a moment ago).
            wait_until(svc.health, timeout=svc.start_timeout, interval=1.0, alive=svc.running)
        console.print(f"  [green]✓[/] {svc.name:<11} running   {svc.endpoint()}")
        return StepTiming(svc.name, install_s, 0.0, "already-running")
    # A crashed leftover (some PIDs dead) is cleaned before a fresh start.
    svc.stop()
    t1 = time.monotonic()
    with console.status(f"[bold]{svc.name}[/]: starting"):
        svc.check_ports_free()
        svc.start()
        try:
            wait_until(svc.health, timeout=svc.start_timeout, interval=0.5, alive=svc.running)
        except DeployError as exc:
            if not svc.running():
                raise svc.fail("start", f"a process exited during start-up ({exc.problem})") from exc
            raise
        except Exception as exc:
            raise svc.fail("health", str(exc)) from exc
    start_s = time.monotonic() - t1
    console.print(
        f"  [green]✓[/] {svc.name:<11} started   {svc.endpoint()}  "
        f"(install {install_s:.1f}s, start {start_s:.1f}s)"
    )
    return StepTiming(svc.name, install_s, start_s, "started")


def down(ctx: Context, only: str | None = None) -> list[str]:
    stopped: list[str] = []
    errors: list[DeployError] = []
    # Only what was named: stopping Connect must not take Postgres and Kafka down with it.
    for svc in reversed(instantiate(resolve(only, with_dependencies=False), ctx)):
        if svc.is_external():
            continue
        if svc.pidfiles():
            # One service that will not stop must not leave the rest running.
            try:
                svc.stop()
            except DeployError as exc:
                errors.append(exc)
                continue
            stopped.append(svc.name)
    if errors:
        raise DeployError(
            ", ".join(e.service for e in errors), "stop", "; ".join(e.problem for e in errors), errors[0].log
        )
    return stopped


def status(ctx: Context, only: str | None = None) -> list[ServiceStatus]:
    return [svc.status() for svc in instantiate(resolve(only, with_dependencies=False), ctx)]


def service_pids(
    names: Sequence[str], ctx: Context | None = None
) -> tuple[dict[str, list[int]], dict[str, str]]:
    """The live PIDs of each service from the PID files `deploy/` records, and each service's
    state: running, degraded (some of its processes exited), external (not on this host: not
    measured), not running, or why it could not be read. Never raises."""
    pids: dict[str, list[int]] = {}
    states: dict[str, str] = {}
    try:
        ctx = ctx or Context(load_config())
    except Exception as exc:  # no usable deploy config: nothing to measure, said so
        return {}, {n: f"unknown ({type(exc).__name__}: {exc})" for n in names}
    for name in names:
        try:
            svc = service_class(name)(ctx)
            if svc.is_external():
                states[name] = "external"
                continue
            procs = svc.processes()
        except KeyError:
            states[name] = "unknown service"
            continue
        except Exception as exc:
            states[name] = f"unknown ({type(exc).__name__}: {exc})"
            continue
        alive = [p.pid for p in procs if p.alive and p.pid]
        if not alive:
            states[name] = NOT_RUNNING
            continue
        pids[name] = alive
        states[name] = "running" if len(alive) == len(procs) else "degraded"
    return pids, states
