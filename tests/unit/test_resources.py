"""The resource monitor against processes whose cost is known: a child that burns one CPU
second, a child that holds 200 MB, an idle one."""

from __future__ import annotations

import subprocess
import sys
import time

from hopscope.experiment.resources import SELF, ResourceMonitor

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<1.0: pass\ntime.sleep(0.6)\n"
HOLD = "import time\nb=bytearray(200*2**20)\nb[::4096]=b'x'*len(b[::4096])\ntime.sleep(2.0)\n"


def test_cpu_seconds_and_peak_memory_of_known_processes() -> None:
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    time.sleep(0.3)  # the interpreter's own start-up is not the measured phase
    try:
        with ResourceMonitor({"idle": [idle.pid]}, interval_s=0.2) as mon:
            burn = subprocess.Popen([sys.executable, "-c", BURN])  # a child of this process: SELF
            hold = subprocess.Popen([sys.executable, "-c", HOLD])
            burn.wait()
            hold.wait()
        out = mon.result(events=100)
    finally:
        idle.kill()
    services = out["services"]
    assert services["idle"]["cpu_s"] < 0.1
    # one CPU second burnt, the other child ~0.1 s, interpreters' start-up a few tenths
    assert 1.0 <= services[SELF]["cpu_s"] < 2.0, services[SELF]
    assert services[SELF]["cpu_ms_per_event"] == round(1e3 * services[SELF]["cpu_s"] / 100, 4)
    assert services[SELF]["peak_rss_mb"] > 200
    assert services[SELF]["processes"] >= 3
    assert out["host_cpu"]["samples"] and 0 <= out["host_cpu"]["share_above"] <= 1
    assert isinstance(out["host_bound"], bool)


def test_a_pid_that_is_gone_costs_nothing_and_breaks_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with ResourceMonitor({"gone": [gone.pid]}, interval_s=0.1, include_self=False) as mon:
        time.sleep(0.25)
    out = mon.result()
    assert out["services"]["gone"] == {"cpu_s": 0, "cpu_ms_per_event": None, "peak_rss_mb": 0.0, "processes": 0}
