"""The clean-start wait: a backlog that drains is waited for and recorded; one that does not
refuses the run (nothing written); a driver that reports nothing starts at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hopscope.pipelines.bench import run_bench
from hopscope.pipelines.clean_start import NotCleanError, TelemetryBusy, combined, wait_clean
from hopscope.pipelines.driver import LoopbackDriver, register_driver
from hopscope.pipelines.workload import load_workload


def _draining(amounts: list[float]):
    seen = iter(amounts)

    async def backlog() -> dict[str, float]:
        return {"rows": next(seen, 0.0), "other": 0.0}

    return backlog


def test_waits_until_the_backlog_has_drained_and_records_what_it_found() -> None:
    start = asyncio.run(wait_clean(_draining([500, 120, 3, 0, 0]), stack="s", timeout_s=5, interval_s=0.01))
    assert start.found == {"rows": 500.0}  # only what was pending at the first check
    assert start.checks == 5  # two zeros in a row after the three non-zero readings
    assert start.items == ["other", "rows"]
    assert start.host_cpu_percent is not None and 0 <= start.host_cpu_percent <= 100


def test_one_zero_between_two_batches_is_not_clean() -> None:
    start = asyncio.run(wait_clean(_draining([7, 0, 4, 0, 0]), stack="s", timeout_s=5, interval_s=0.01))
    assert start.checks == 5


def test_a_backlog_that_never_drains_refuses_with_what_is_left() -> None:
    async def stuck() -> dict[str, float]:
        return {"CDC rows not yet on Kafka": 4200.0, "drained item": 0.0}

    with pytest.raises(NotCleanError) as err:
        asyncio.run(wait_clean(stuck, stack="kafka", timeout_s=0.05, interval_s=0.01))
    assert "CDC rows not yet on Kafka = 4200" in str(err.value) and "drained item" not in str(err.value)
    assert err.value.pending["CDC rows not yet on Kafka"] == 4200.0


def test_a_driver_that_reports_nothing_starts_at_once() -> None:
    async def nothing() -> dict[str, float]:
        return {}

    start = asyncio.run(wait_clean(nothing, stack="s", timeout_s=5, interval_s=0.01))
    assert start.checks == 1 and start.found == {} and start.items == []


class _Backlogged(LoopbackDriver):
    stack = "backlogged"

    async def backlog(self) -> dict[str, float]:
        return {"queued": 10.0}


def test_bench_refuses_and_writes_nothing_when_the_stack_stays_busy(tmp_path: Path) -> None:
    register_driver("backlogged", _Backlogged)
    workload = load_workload("write_notify", {"rate": 50, "duration_s": 0.2, "clean_timeout_s": 0.2})
    out = tmp_path / "run"
    with pytest.raises(NotCleanError):
        run_bench("backlogged", workload, out=out, tracing=False, progress=False)
    assert not out.exists()


def test_bench_records_the_clean_start_in_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orjson

    from hopscope.pipelines import bench

    # no telemetry services in this test, whatever runs on the host
    monkeypatch.setattr(bench, "telemetry_backlog", lambda: TelemetryBusy({}))
    workload = load_workload("write_notify", {"rate": 50, "duration_s": 0.2})
    run_dir, result = run_bench("loopback", workload, out=tmp_path / "run", tracing=False, progress=False)
    clean = orjson.loads((run_dir / "manifest.json").read_bytes())["load"]["clean_start"]
    assert clean["checks"] == 1 and clean["found"] == {} and clean["waited_s"] >= 0
    assert result.clean_start is not None


def test_telemetry_busy_names_a_busy_process_and_not_an_idle_one() -> None:
    import subprocess
    import sys

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        source = TelemetryBusy({"collector": [busy.pid], "jaeger": [idle.pid], "gone": [2**22 + 7]})
        assert set(source.procs) == {"collector", "jaeger"}  # a PID that is not there is skipped

        async def twice() -> dict[str, float]:
            await source()
            await asyncio.sleep(0.5)
            return await combined(source, None)()

        out = asyncio.run(twice())
        assert out[source.item("collector")] > source.busy_percent  # a spinning process, even on a busy host
        assert out[source.item("jaeger")] == 0.0
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
