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
import json
import os
import select
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from hopscope.deploy.base import Context
from hopscope.deploy.lifecycle import NOT_RUNNING, service_pids
from hopscope.deploy.registry import GROUPS, SERVICES

from .sampler import GLUE, LOADGEN, Usage

#: a phase is host-bound when the host's CPU was above this for more than HOST_BOUND_SHARE of it
HOST_BOUND_CPU_PERCENT = 85.0
HOST_BOUND_SHARE = 0.10


class ResourceMonitor:
    """Use as a context manager around a phase; `result()` afterwards.

    The sampling runs in a process of its own (`sampler.py`, which imports only psutil):
    sampling every tree costs ~18 ms of CPU per sample, which on a thread of the load generator
    held its GIL and showed as send lag. A monitor that fails costs the phase its resource
    record (`monitor_error` says why), never the phase itself."""

    #: the monitor process's start-up (a fresh interpreter) and its answer at the end
    ANSWER_TIMEOUT_S = 30.0

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
        self._usage = {name: Usage() for name in self.roots}
        self._host: list[tuple[float, float]] = []
        self._seconds = 0.0
        self._proc: subprocess.Popen[str] | None = None
        #: why there are no readings, when the monitor process failed (the result says so)
        self.error: str | None = None

    def _answer(self) -> str:
        """The monitor's next line, within ANSWER_TIMEOUT_S."""
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.ANSWER_TIMEOUT_S)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            err = self._proc.stderr.read() if self._proc.poll() is not None and self._proc.stderr else ""
            raise RuntimeError(
                f"no answer within {self.ANSWER_TIMEOUT_S:g} s{': ' + err.strip()[-300:] if err else ''}"
            )
        return line

    def __enter__(self) -> ResourceMonitor:
        config = {
            "roots": self.roots,
            "interval_s": self.interval_s,
            "exclude": self._exclude,
            "bench_pid": os.getpid(),
        }
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from hopscope.experiment.sampler import main; main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(config) + "\n")
            self._proc.stdin.flush()
            if self._answer().strip() != "ready":
                raise RuntimeError("unexpected first answer")
        except (OSError, RuntimeError, ValueError) as exc:
            self.error = f"the resource monitor did not start ({type(exc).__name__}: {exc})"
            self._stop_process()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write("stop\n")
            self._proc.stdin.flush()
            readings = json.loads(self._answer())
            self._usage = {name: Usage.from_json(u) for name, u in readings["usage"].items()}
            self._host = [tuple(x) for x in readings["host"]]  # type: ignore[misc]
            self._seconds = float(readings["seconds"])
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            self.error = f"the resource monitor gave no readings ({type(exc).__name__}: {exc})"
        finally:
            self._stop_process()

    def _stop_process(self) -> None:
        if self._proc is None:
            return
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                # closing stdin flushes what a write left buffered; to a process that already
                # exited that is a BrokenPipeError, and there is nobody left to tell
                with contextlib.suppress(BrokenPipeError):
                    stream.close()
        self._proc = None

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
