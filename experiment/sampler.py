"""The resource monitor's own process: samples the phase's process trees and the host's CPU
and answers the bench (`resources.ResourceMonitor`) over its stdin/stdout.

It imports only psutil, so it starts fast and does not depend on the rest of hopscope. The
protocol is three lines: the bench writes the configuration (JSON), the monitor answers
`ready` after its first sample; the bench writes `stop`, the monitor takes a last sample and
answers the readings (JSON) and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

#: the bench process alone: the open-loop load generator, its subscribers' callbacks, the drivers' clients
LOADGEN = "hopscope load generator"
#: the processes the stack's driver spawns from the bench (Kafka glue consumers, the Streams
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
class Usage:
    cpu_start: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    peak_rss: int = 0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Usage:
        # JSON object keys are strings: the PIDs come back as ints
        return cls(
            {int(k): float(v) for k, v in doc["cpu_start"].items()},
            {int(k): float(v) for k, v in doc["cpu_last"].items()},
            int(doc["peak_rss"]),
        )


class Sampler:
    def __init__(
        self, roots: dict[str, list[int]], interval_s: float, exclude: frozenset[int], bench_pid: int
    ) -> None:
        self.roots = roots
        self.interval_s = interval_s
        self.exclude = exclude | {os.getpid()}  # the monitor is a child of the bench: not GLUE
        self.bench_pid = bench_pid
        self.usage = {name: Usage() for name in roots}
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
            return [c.pid for c in psutil.Process(self.bench_pid).children() if c.pid not in stop]
        except psutil.Error:
            return []

    def tick(self) -> None:
        self.host.append((time.monotonic() - self.t0, psutil.cpu_percent(interval=None)))
        self.sample()

    def readings(self) -> dict[str, Any]:
        return {
            "usage": {name: asdict(u) for name, u in self.usage.items()},
            "host": self.host,
            "seconds": time.monotonic() - self.t0,
        }


def main() -> None:
    config = json.loads(sys.stdin.readline())
    # psutil's cpu_percent(None) reference point: set now, or the first sample reads 0 %
    psutil.cpu_percent(interval=None)
    sampler = Sampler(
        {k: [int(p) for p in v] for k, v in config["roots"].items()},
        float(config["interval_s"]),
        frozenset(int(p) for p in config["exclude"]),
        int(config["bench_pid"]),
    )
    sampler.sample(first=True)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], sampler.interval_s)
        if ready:
            break  # "stop" (or the bench is gone: end of input)
        sampler.tick()
    sampler.sample()
    print(json.dumps(sampler.readings()), flush=True)
