"""Every run starts clean: before a run's first event the stack has nothing left of an earlier run.

An overloaded run leaves work behind — a CDC backlog in a replication slot, partitions whose
followers are catching up, a replica queue on a Harper node, a consumer process of a run that
crashed. The next run's events would queue behind it, and its figures would measure the
leftovers, not the workload. So after `setup` the load generator asks the driver for its
`backlog()` (name → amount still pending; 0 = none) until every amount has been 0 for
`SETTLE_CHECKS` checks in a row, for at most the workload's `clean_timeout_s`. When that does
not come it refuses to measure (`NotCleanError`: nothing is written as a result).

Work no driver sees is waited for the same way: the collector and the trace store still
taking an earlier run's spans (every process exports its spans when its run ends, D15) —
`TelemetryBusy` reports them busy above `TELEMETRY_BUSY_PERCENT` of a core. The host's CPU
use during the wait is recorded beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

#: consecutive all-zero checks that count as clean (one zero can fall between two batches)
SETTLE_CHECKS = 2
CHECK_INTERVAL_S = 0.5
#: host CPU busy (% of all cores) above which the record says the host was not idle at the start
BUSY_HOST_PERCENT = 60.0

#: a telemetry process using more than this (% of one core) is still taking spans; idle, the
#: collector and Jaeger use 0-2 % here
TELEMETRY_BUSY_PERCENT = 10.0

Backlog = dict[str, float]
BacklogSource = Callable[[], Awaitable[Backlog]]


class NotCleanError(RuntimeError):
    """The stack still holds an earlier run's work after the bounded wait: nothing is measured."""

    def __init__(self, stack: str, timeout_s: float, pending: Backlog) -> None:
        items = ", ".join(f"{k} = {v:g}" for k, v in pending.items() if v) or "(none reported)"
        super().__init__(
            f"stack {stack!r} is not idle after waiting {timeout_s:g} s for an earlier run's work to "
            f"drain: {items}. Nothing was measured (a run started now would measure that backlog). "
            "Wait and retry, raise the workload's clean_timeout_s, or restart the stack's services."
        )
        self.stack = stack
        self.pending = pending


@dataclass
class CleanStart:
    """How the run's start was made clean (the manifest's `load.clean_start`)."""

    waited_s: float
    checks: int
    #: the backlog at the first check (what an earlier run left), only non-zero items
    found: Backlog = field(default_factory=dict)
    items: list[str] = field(default_factory=list)  # every item the driver reports
    host_cpu_percent: float | None = None

    @property
    def host_busy(self) -> bool:
        return self.host_cpu_percent is not None and self.host_cpu_percent > BUSY_HOST_PERCENT

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"host_busy": self.host_busy}


async def wait_clean(
    backlog: Callable[[], Awaitable[Backlog]],
    *,
    stack: str,
    timeout_s: float,
    interval_s: float = CHECK_INTERVAL_S,
    settle_checks: int = SETTLE_CHECKS,
) -> CleanStart:
    """Poll `backlog()` until it is all zero `settle_checks` times in a row; raise NotCleanError
    after `timeout_s`. A driver that reports nothing (an empty dict) is clean at once."""
    started = time.monotonic()
    psutil.cpu_percent(interval=None)  # primes the host counter: the next call covers the wait
    checks = zero_streak = 0
    found: Backlog = {}
    items: set[str] = set()
    while True:
        pending = await backlog()
        checks += 1
        items |= set(pending)
        if checks == 1:
            found = {k: float(v) for k, v in pending.items() if v}
        zero_streak = zero_streak + 1 if not any(pending.values()) else 0
        if not pending or zero_streak >= settle_checks:
            break
        if time.monotonic() - started >= timeout_s:
            raise NotCleanError(stack, timeout_s, pending)
        await asyncio.sleep(interval_s)
    if time.monotonic() - started < interval_s:
        await asyncio.sleep(interval_s)  # a reading of the host over at least one interval
    return CleanStart(
        waited_s=round(time.monotonic() - started, 3),
        checks=checks,
        found=found,
        items=sorted(items),
        host_cpu_percent=psutil.cpu_percent(interval=None),
    )


class TelemetryBusy:
    """A backlog source for the telemetry services (by name → PIDs): each one's CPU use, in % of
    one core, since the previous check, reported when above `TELEMETRY_BUSY_PERCENT`."""

    def __init__(
        self, pids: Mapping[str, Sequence[int]], busy_percent: float = TELEMETRY_BUSY_PERCENT
    ) -> None:
        self.busy_percent = busy_percent
        self.procs: dict[str, list[psutil.Process]] = {}
        for name, ps in pids.items():
            alive = []
            for pid in ps:
                try:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(interval=None)  # primes it: the first check covers the set-up
                except psutil.Error:
                    continue
                alive.append(proc)
            if alive:
                self.procs[name] = alive

    def item(self, name: str) -> str:
        return f"{name} still taking spans (% of a core)"

    async def __call__(self) -> Backlog:
        out: Backlog = {}
        for name, procs in self.procs.items():
            pct = 0.0
            for proc in procs:
                try:
                    pct += proc.cpu_percent(interval=None)
                except psutil.Error:
                    continue
            out[self.item(name)] = round(pct, 1) if pct > self.busy_percent else 0.0
        return out


def combined(*sources: BacklogSource | None) -> BacklogSource:
    """One backlog of several sources (a driver's and the telemetry's)."""
    present = [s for s in sources if s is not None]

    async def backlog() -> Backlog:
        out: Backlog = {}
        for source in present:
            out.update(await source())
        return out

    return backlog
