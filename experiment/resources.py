"""What each phase cost the host: CPU seconds and peak memory per service, host CPU over time.

The study's own caveat was that the machine, not the stack, became the bottleneck; two
stacks on two cores cannot be compared without knowing how busy the cores were. A
`ResourceMonitor` samples, on a background thread, the process trees of the services a
phase uses (from the PIDs `deploy/` records) plus the bench process itself (the load
generator and the glue processes it spawns), and the host's CPU use.

CPU seconds come from each process's own counters (user + system) at the start and the end,
so they are exact whatever the sampling interval; a process that exits between samples
keeps its last reading. Peak RSS and host CPU are sampled.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

#: a phase is host-bound when the host's CPU was above this for more than HOST_BOUND_SHARE of it
HOST_BOUND_CPU_PERCENT = 85.0
HOST_BOUND_SHARE = 0.10
SELF = "hopscope (load generator + glue)"


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


@dataclass
class _Usage:
    cpu_start: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0


class ResourceMonitor:
    """Use as a context manager around a phase; `result()` afterwards."""

    def __init__(
        self, services: Mapping[str, Sequence[int]], interval_s: float = 0.5, include_self: bool = True
    ) -> None:
        self.roots: dict[str, list[int]] = {name: list(pids) for name, pids in services.items()}
        if include_self:
            self.roots[SELF] = [os.getpid()]
        self.interval_s = interval_s
        self._usage = {name: _Usage() for name in self.roots}
        self._host: list[tuple[float, float]] = []  # (seconds since start, host CPU %)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._seconds = 0.0

    def _sample(self, first: bool = False) -> None:
        for name, pids in self.roots.items():
            usage = self._usage[name]
            rss = 0
            for pid in pids:
                for proc in _tree(pid):
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

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._host.append((time.monotonic() - self._t0, psutil.cpu_percent(interval=None)))
            self._sample()

    def __enter__(self) -> ResourceMonitor:
        self._t0 = time.monotonic()
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._seconds = time.monotonic() - self._t0

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
        }
