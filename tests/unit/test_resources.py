"""The resource monitor against processes whose cost is known: a child that burns one CPU
second, a child that holds 200 MB, an idle one."""

from __future__ import annotations

import subprocess
import sys
import time

from hopscope.experiment.resources import GLUE, LOADGEN, ResourceMonitor

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<1.0: pass\ntime.sleep(0.6)\n"
HOLD = "import time\nb=bytearray(200*2**20)\nb[::4096]=b'x'*len(b[::4096])\ntime.sleep(2.0)\n"


def test_cpu_seconds_and_peak_memory_of_known_processes() -> None:
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    time.sleep(0.3)  # the interpreter's own start-up is not the measured phase
    try:
        with ResourceMonitor({"idle": [idle.pid]}, interval_s=0.2) as mon:
            # a child of this process: the stack processes spawned by the bench (GLUE)
            burn = subprocess.Popen([sys.executable, "-c", BURN])
            hold = subprocess.Popen([sys.executable, "-c", HOLD])
            burn.wait()
            hold.wait()
        out = mon.result(events=100)
    finally:
        idle.kill()
    services = out["services"]
    assert services["idle"]["cpu_s"] < 0.1
    # one CPU second burnt, the other child ~0.1 s, interpreters' start-up a few tenths: all in
    # the spawned processes, none in the load generator (this process, which only waited)
    assert 1.0 <= services[GLUE]["cpu_s"] < 2.0, services[GLUE]
    assert services[GLUE]["cpu_ms_per_event"] == round(1e3 * services[GLUE]["cpu_s"] / 100, 4)
    assert services[GLUE]["peak_rss_mb"] > 200
    assert services[GLUE]["processes"] == 2
    assert services[LOADGEN]["processes"] == 1 and services[LOADGEN]["cpu_s"] < 0.5
    assert out["host_cpu"]["samples"] and 0 <= out["host_cpu"]["share_above"] <= 1
    assert out["host_cpu"]["samples"][0][1] > 0  # a core was burning from the start (not a 0 % first sample)
    assert isinstance(out["host_bound"], bool)


def test_a_pid_that_is_gone_costs_nothing_and_breaks_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with ResourceMonitor({"gone": [gone.pid]}, interval_s=0.1, include_self=False) as mon:
        time.sleep(0.25)
    out = mon.result()
    assert out["services"]["gone"] == {
        "cpu_s": 0,
        "cpu_ms_per_event": None,
        "peak_rss_mb": 0.0,
        "processes": 0,
    }


WAIT_BURN = "import sys; sys.stdin.readline()\n" + BURN  # burns once told to (inside the phase)


def _service(ctx, name: str) -> subprocess.Popen:
    """A child of this process (like the services `up` starts) recorded as `name`'s PID file."""
    proc = subprocess.Popen([sys.executable, "-c", WAIT_BURN], stdin=subprocess.PIPE)
    ctx.service_dir(name).joinpath(f"{name}-server.pid").write_text(str(proc.pid))
    return proc


def _ctx(tmp_path):
    from hopscope.deploy.base import Context
    from hopscope.deploy.config import load_config

    return Context(load_config(environ={"HOPSCOPE_STATE_DIR": str(tmp_path)}))


def test_services_are_read_from_deploy_pid_files_and_counted_once(tmp_path) -> None:
    """A running service (its PID file points at a live process), one that is not running,
    a name deploy does not know; the service's tree is not counted again in this process's."""
    from hopscope.deploy.lifecycle import NOT_RUNNING, service_pids
    from hopscope.experiment.resources import PhaseMonitor

    ctx = _ctx(tmp_path)
    busy = _service(ctx, "redis")
    try:
        pids, states = service_pids(["redis", "postgres", "nope"], ctx)
        assert pids == {"redis": [busy.pid]}
        assert states == {"redis": "running", "postgres": NOT_RUNNING, "nope": "unknown service"}
        with PhaseMonitor(["redis", "postgres"], telemetry=["collector"], ctx=ctx, interval_s=0.2) as mon:
            busy.communicate(b"go\n")
    finally:
        busy.kill()
    rec = mon.record(events=10, schedule_lag_p99_ms=3.0)
    services = rec["services"]
    assert services["redis"]["role"] == "stack" and services["redis"]["cpu_s"] >= 0.9
    # the burner is the service's, counted neither as the load generator nor as a spawned process
    assert services[LOADGEN]["cpu_s"] < 0.5 and services[GLUE]["cpu_s"] < 0.5
    assert services["postgres"] == {"role": "stack", "state": NOT_RUNNING, "cpu_s": None,
                                    "cpu_ms_per_event": None, "peak_rss_mb": None, "processes": 0}  # fmt: skip
    assert services["collector"]["role"] == "telemetry" and services["collector"]["state"] == NOT_RUNNING
    assert rec["host_bound"] and rec["host_bound_reasons"][-1] == "load generator p99 lag 3.00 ms > 1 ms"
    assert rec["events"] == 10 and rec["schedule_lag_p99_ms"] == 3.0


def test_another_stacks_service_is_not_counted_as_the_load_generator(tmp_path) -> None:
    """A service deploy knows but this phase does not measure (another stack's, started by `up`
    from this process) is left out of this process's tree."""
    from hopscope.experiment.resources import PhaseMonitor

    ctx = _ctx(tmp_path)
    other = _service(ctx, "redis")
    try:
        with PhaseMonitor(["postgres"], telemetry=[], ctx=ctx, interval_s=0.2) as mon:
            other.communicate(b"go\n")
    finally:
        other.kill()
    services = mon.record(events=1)["services"]
    assert "redis" not in services and services[LOADGEN]["cpu_s"] < 0.5 and services[GLUE]["cpu_s"] < 0.5


def test_a_monitor_that_cannot_start_costs_the_record_not_the_phase(monkeypatch) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the monitor process exits at once
    with ResourceMonitor({}, interval_s=0.1) as mon:
        time.sleep(0.05)
    out = mon.result(events=10)
    assert out["monitor_error"] and "did not start" in out["monitor_error"]
    assert out["host_cpu"]["samples"] == [] and out["host_bound"] is False
