"""What each phase cost the host: CPU seconds and peak memory per service, host CPU over time.

The study's own caveat was that the machine, not the stack, became the bottleneck; two
stacks on two cores cannot be compared without knowing how busy the cores were. A
`ResourceMonitor` samples, from a process of its own, the process trees of the services a
phase uses (from the PIDs `deploy/` records) plus the bench process itself (the load
generator and the glue processes it spawns), and the host's CPU use. A tree stops at
another root's PID, so a service started from the bench process is counted once, as itself.

CPU seconds come from each process's own counters (user + system) at the start and the end,
so they are exact whatever the sampling interval; a process that exits between samples
keeps its last reading. Peak RSS and host CPU are sampled.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import psutil

from hopscope.deploy.base import Context
from hopscope.deploy.lifecycle import NOT_RUNNING, service_pids
from hopscope.deploy.registry import GROUPS, SERVICES

#: a phase is host-bound when the host's CPU was above this for more than HOST_BOUND_SHARE of it
HOST_BOUND_CPU_PERCENT = 85.0
HOST_BOUND_SHARE = 0.10
#: this process alone: the open-loop load generator, its subscribers' callbacks, the drivers' clients
LOADGEN = "hopscope load generator"
#: the processes the stack's driver spawns from this process (Kafka glue consumers, the Streams
#: app): part of the stack's operating cost, not of the load generator's
GLUE = "stack processes spawned by the bench"


def _tree(pid: int, stop: frozenset[int] = frozenset(), descend: bool = True) -> list[psutil.Process]:
    """The process and its descendants, not descending into `stop` (another root's tree)."""
    try:
        out = [psutil.Process(pid)]
    except psutil.Error:
        return []
    if not descend:
        return out
    i = 0
    while i < len(out):
        with contextlib.suppress(psutil.Error):
            out += [c for c in out[i].children() if c.pid not in stop]
        i += 1
    return out


@dataclass
class _Usage:
    cpu_start: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0


def _multiprocessing_helper(proc: psutil.Process) -> bool:
    """This monitor and spawn's resource tracker: children of the bench, not stack processes."""
    try:
        return any("from multiprocessing." in arg for arg in proc.cmdline())
    except psutil.Error:
        return False


class _Sampler:
    """The sampling itself, run in the monitor's own process (`_monitor_main`)."""

    def __init__(
        self, roots: dict[str, list[int]], interval_s: float, exclude: frozenset[int], bench_pid: int
    ) -> None:
        self.roots = roots
        self.interval_s = interval_s
        self.exclude = exclude | {os.getpid()}  # the monitor is a child of the bench: not GLUE
        self.bench_pid = bench_pid
        self.usage = {name: _Usage() for name in roots}
        self.host: list[tuple[float, float]] = []  # (seconds since start, host CPU %)
        self.t0 = time.monotonic()

    def sample(self, first: bool = False) -> None:
        for name, pids in self.roots.items():
            usage = self.usage[name]
            rss = 0
            # services that `hopscope up` started from the bench process are its children: each
            # tree stops at another root, so nothing is counted twice
            stop = self.exclude | {p for other, ps in self.roots.items() if other != name for p in ps}
            if name == GLUE:
                pids = self._children(stop)
            for pid in pids:
                for proc in _tree(pid, stop, descend=name != LOADGEN):
                    try:
                        with proc.oneshot():
                            t = proc.cpu_times()
                            cpu = t.user + t.system
                            rss += proc.memory_info().rss
                    except psutil.Error:
                        continue
                    # a process born during the phase starts from zero
                    usage.cpu_start.setdefault(proc.pid, cpu if first else 0.0)
                    usage.cpu_last[proc.pid] = cpu
            usage.peak_rss = max(usage.peak_rss, rss)

    def _children(self, stop: frozenset[int]) -> list[int]:
        try:
            children = psutil.Process(self.bench_pid).children()
        except psutil.Error:
            return []
        return [c.pid for c in children if c.pid not in stop and not _multiprocessing_helper(c)]

    def tick(self) -> None:
        self.host.append((time.monotonic() - self.t0, psutil.cpu_percent(interval=None)))
        self.sample()


def _monitor_main(
    conn: Connection, roots: dict[str, list[int]], interval_s: float, exclude: list[int], bench_pid: int
) -> None:
    """The monitor process: a first sample, "ready", then a sample every interval until "stop",
    a last sample, and the readings back to the bench."""
    # psutil's cpu_percent(None) reference point: set now, or the first sample reads 0 %
    psutil.cpu_percent(interval=None)
    sampler = _Sampler(roots, interval_s, frozenset(exclude), bench_pid)
    sampler.sample(first=True)
    conn.send("ready")
    while not conn.poll(interval_s):
        sampler.tick()
    conn.recv()
    sampler.sample()
    conn.send((sampler.usage, sampler.host, time.monotonic() - sampler.t0))
    conn.close()


class ResourceMonitor:
    """Use as a context manager around a phase; `result()` afterwards.

    The sampling runs in a process of its own: sampling every tree costs ~18 ms of CPU per
    sample, which on a thread of the load generator held its GIL and showed as send lag."""

    #: the monitor process's start-up (a fresh interpreter) and its answer at the end
    START_TIMEOUT_S = 60.0

    def __init__(
        self,
        services: Mapping[str, Sequence[int]],
        interval_s: float = 0.5,
        include_self: bool = True,
        exclude: Sequence[int] = (),
    ) -> None:
        """`exclude`: roots of trees measured by no one here (other services started from this
        process: not part of its own tree)."""
        self.roots: dict[str, list[int]] = {name: list(pids) for name, pids in services.items()}
        if include_self:
            self.roots[LOADGEN] = [os.getpid()]
            self.roots[GLUE] = []  # this process's children, looked up at every sample
        self.interval_s = interval_s
        self._exclude = list(exclude)
        self._usage = {name: _Usage() for name in self.roots}
        self._host: list[tuple[float, float]] = []
        self._seconds = 0.0
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        #: why there are no readings, when the monitor process failed (the result says so)
        self.error: str | None = None

    def __enter__(self) -> ResourceMonitor:
        mp = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
        self._conn, child = mp.Pipe()
        self._proc = mp.Process(
            target=_monitor_main,
            args=(child, self.roots, self.interval_s, self._exclude, os.getpid()),
            name="hopscope-resource-monitor",
            daemon=True,
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(self.START_TIMEOUT_S):
            self._proc.kill()
            raise RuntimeError(f"the resource monitor did not start within {self.START_TIMEOUT_S:g} s")
        self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None or self._conn is None:
            return
        try:
            self._conn.send("stop")
            if self._conn.poll(self.START_TIMEOUT_S):
                self._usage, self._host, self._seconds = self._conn.recv()
            else:
                self.error = f"the resource monitor gave no readings within {self.START_TIMEOUT_S:g} s"
        except (EOFError, OSError) as exc:  # the monitor died: its readings are lost, not the phase
            self.error = f"the resource monitor process failed ({type(exc).__name__}: {exc})"
        finally:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
            self._conn.close()

    def result(self, events: int | None = None) -> dict[str, Any]:
        """CPU seconds, CPU ms per event and peak RSS per service; host CPU samples and the verdict."""
        services = {}
        for name, usage in self._usage.items():
            cpu_s = sum(usage.cpu_last[p] - usage.cpu_start.get(p, 0.0) for p in usage.cpu_last)
            services[name] = {
                "cpu_s": round(cpu_s, 3),
                "cpu_ms_per_event": round(1e3 * cpu_s / events, 4) if events else None,
                "peak_rss_mb": round(usage.peak_rss / 2**20, 1),
                "processes": len(usage.cpu_last),
            }
        busy = [pct for _, pct in self._host]
        share_over = sum(p > HOST_BOUND_CPU_PERCENT for p in busy) / len(busy) if busy else 0.0
        return {
            "seconds": round(self._seconds, 2),
            "cores": psutil.cpu_count(),
            "services": services,
            "host_cpu": {
                "interval_s": self.interval_s,
                "samples": [(round(t, 2), p) for t, p in self._host],
                "mean_percent": round(sum(busy) / len(busy), 1) if busy else None,
                "share_above": round(share_over, 3),
                "threshold_percent": HOST_BOUND_CPU_PERCENT,
            },
            "host_bound": share_over > HOST_BOUND_SHARE,
            "monitor_error": self.error,
        }


# --- one phase of the study --------------------------------------------------------------------

#: the load generator fell behind its schedule when the p99 of (sent − intended) exceeds this
SCHEDULE_LAG_P99_MS = 1.0
#: what each measured tree is to the phase (the report sums the stack's own as its operating cost)
ROLE_STACK, ROLE_TELEMETRY, ROLE_BENCH = "stack", "telemetry", "load generator"


def telemetry_services() -> tuple[str, ...]:
    """The services that run during every phase beside the stack's (deploy's telemetry group:
    they compete for the same cores)."""
    return tuple(GROUPS.get("telemetry", ()))


class PhaseMonitor:
    """A `ResourceMonitor` over a phase's services (from deploy's PID files) and this process;
    `record(...)` is what the phase stores."""

    def __init__(
        self, stack_services: Sequence[str], telemetry: Sequence[str] | None = None,
        ctx: Context | None = None, interval_s: float = 0.5,
    ) -> None:  # fmt: skip
        telemetry = telemetry_services() if telemetry is None else telemetry
        self.roles = {s: ROLE_STACK for s in stack_services}
        self.roles.update({s: ROLE_TELEMETRY for s in telemetry if s not in self.roles})
        self.pids, self.states = service_pids(list(self.roles), ctx)
        # every other service deploy knows is left out of this process's tree (`up` may have
        # started another stack's services from it)
        others, _ = service_pids([s for s in SERVICES if s not in self.roles], ctx)
        self.monitor = ResourceMonitor(
            self.pids, interval_s=interval_s, exclude=[p for ps in others.values() for p in ps]
        )

    def __enter__(self) -> PhaseMonitor:
        self.monitor.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.monitor.__exit__(*exc)

    def record(self, events: int | None, schedule_lag_p99_ms: float | None = None) -> dict[str, Any]:
        out = self.monitor.result(events)
        measured = out.pop("services")
        services: dict[str, Any] = {}
        for name, role in self.roles.items():
            state = self.states.get(name, NOT_RUNNING)
            unmeasured = {"cpu_s": None, "cpu_ms_per_event": None, "peak_rss_mb": None, "processes": 0}
            services[name] = {"role": role, "state": state} | measured.get(name, unmeasured)
        services[LOADGEN] = {"role": ROLE_BENCH, "state": "running"} | measured[LOADGEN]
        services[GLUE] = {"role": ROLE_STACK, "state": "running"} | measured[GLUE]
        reasons = []
        host = out["host_cpu"]
        if out["host_bound"]:
            reasons.append(
                f"host CPU above {host['threshold_percent']:g} % for {100 * host['share_above']:.0f} % of the phase"
            )
        if schedule_lag_p99_ms is not None and schedule_lag_p99_ms > SCHEDULE_LAG_P99_MS:
            reasons.append(
                f"load generator p99 lag {schedule_lag_p99_ms:.2f} ms > {SCHEDULE_LAG_P99_MS:g} ms"
            )
        return {
            **out,
            "events": events,
            "services": services,
            "schedule_lag_p99_ms": schedule_lag_p99_ms,
            "host_bound": bool(reasons),
            "host_bound_reasons": reasons,
            "host_bound_rule": {
                "cpu_percent": HOST_BOUND_CPU_PERCENT,
                "share": HOST_BOUND_SHARE,
                "schedule_lag_p99_ms": SCHEDULE_LAG_P99_MS,
            },
        }
