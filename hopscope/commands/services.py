"""`hopscope up | down | status | logs`: the services on this host."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hopscope.commands.json_output import JsonOption, print_json
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import down, status, up
from hopscope.deploy.registry import GROUPS, SERVICES, instantiate, resolve
from hopscope.pipelines.stack import StackError, discover_stacks

console = Console(stderr=True)
#: `--only <stack>-stack` stands for the services that stack's declaration needs.
STACK_SUFFIX = "-stack"


def _only_help() -> str:
    try:
        stacks = [f"{name}{STACK_SUFFIX}" for name in discover_stacks()]
    except StackError:  # a broken declaration must not break --help; `up` names the problem
        stacks = []
    return f"comma-separated services or groups ({', '.join([*stacks, *GROUPS])})"


OnlyOpt = Annotated[str | None, typer.Option("--only", help=_only_help())]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config (default: $HOPSCOPE_CONFIG or ./hopscope.toml)")
]


def expand_stacks(only: str | None) -> str | None:
    """`<stack>-stack` items → the services the stack declares (deploy itself knows no stack)."""
    if not only:
        return only
    items = [x.strip() for x in only.split(",") if x.strip()]
    if not any(x.endswith(STACK_SUFFIX) for x in items):
        return only
    stacks = discover_stacks()  # a broken declaration: StackError, exit 2 (hopscope.commands.errors)
    out: list[str] = []
    for item in items:
        name = item.removesuffix(STACK_SUFFIX)
        if item.endswith(STACK_SUFFIX) and name in stacks:
            out += stacks[name].spec.services
        else:
            out.append(item)  # a service or group: deploy's registry checks it
    return ",".join(dict.fromkeys(out))


def context(config: Path | None) -> Context:
    """The deploy context of a config file (ConfigError, exit 2, when it is invalid)."""
    return Context(load_config(config))


def up_cmd(only: OnlyOpt = None, config: ConfigOpt = None) -> None:
    """Install (once, cached) and start the services, each checked by a real round trip."""
    ctx = context(config)
    t0 = time.monotonic()
    timings = up(ctx, expand_stacks(only), console)  # DeployError, UnknownService: exit 1
    total = time.monotonic() - t0
    installs = sum(t.install_s for t in timings)
    console.print(f"ready in {total:.1f}s (installs {installs:.1f}s); state in {ctx.state_dir}")


def down_cmd(only: OnlyOpt = None, config: ConfigOpt = None) -> None:
    """Stop the services started by `up` (by their recorded PIDs)."""
    stopped = down(context(config), expand_stacks(only))
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def status_cmd(
    only: OnlyOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOption = False,
) -> None:
    """Each service's state, endpoint, PIDs and memory."""
    rows = status(context(config), expand_stacks(only))
    if as_json:
        out = [
            {
                "service": r.service,
                "state": r.state,
                "endpoint": r.endpoint,
                "pids": [p.pid for p in r.processes],
                "rss_bytes": r.rss_bytes,
                "detail": r.detail,
            }
            for r in rows
        ]
        print_json(out)
        return
    table = Table(title="hopscope services")
    for col in ("service", "state", "endpoint", "pids", "RSS"):
        table.add_column(col)
    colours = {"running": "green", "external": "cyan", "degraded": "yellow"}
    for r in rows:
        colour = colours.get(r.state, "red")
        pids = " ".join(str(p.pid) for p in r.processes if p.alive)
        state = f"[{colour}]{r.state}[/]" + (f" ({r.detail})" if r.detail else "")
        table.add_row(
            r.service, state, r.endpoint, pids, f"{r.rss_bytes / 2**20:,.0f} MiB" if r.rss_bytes else ""
        )
    total = sum(r.rss_bytes for r in rows)
    Console().print(table)
    Console().print(f"total RSS: {total / 2**30:.2f} GiB")


def logs_cmd(
    service: Annotated[str, typer.Argument(help=f"one of: {', '.join(SERVICES)}")],
    lines: Annotated[int, typer.Option("-n", help="last N lines of each log")] = 50,
    config: ConfigOpt = None,
) -> None:
    """Show the tail of a service's log files."""
    ctx = context(config)
    (svc,) = instantiate(resolve(service), ctx)[-1:]
    logs = sorted(ctx.service_dir(svc.name).glob("*.log"))
    if not logs:
        console.print(f"{svc.name}: no log files in {ctx.service_dir(svc.name)}")
        raise typer.Exit(1)
    for log in logs:
        console.print(f"[bold]==> {log} <==[/]")
        typer.echo("\n".join(log.read_text(errors="replace").splitlines()[-lines:]))


def register(app: typer.Typer) -> None:
    app.command("up")(up_cmd)
    app.command("down")(down_cmd)
    app.command("status")(status_cmd)
    app.command("logs")(logs_cmd)
