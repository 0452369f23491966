"""The parsing helpers of benchmarks/component_capacity.py, on the tools' real output."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "component_capacity.py"


@pytest.fixture(scope="module")
def cc() -> ModuleType:
    # benchmarks/ is no package: import the script by path (registered, so its dataclasses resolve)
    spec = importlib.util.spec_from_file_location("component_capacity_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


PRODUCER_OUT = """\
Warmup first 5000 records. Steady state results will print after the complete test summary.
In steady state.
286 records sent, 286.0 records/sec (0.07 MB/sec), 954.2 ms avg latency, 996.0 ms max latency.
7501 records sent, 7478.6 records/sec (1.83 MB/sec), 1457.7 ms avg latency, 1879.0 ms max latency.
14032 records sent, 13990.0 records/sec (3.42 MB/sec), 2613.1 ms avg latency, 2995.0 ms max latency.
50000 records sent, 8869.966294 records/sec (2.17 MB/sec), 2281.91 ms avg latency, 3501.00 ms max latency, 2254 ms 50th, 3377 ms 95th, 3482 ms 99th, 3501 ms 99.9th.
45000 steady state records sent, 9178.054252 records/sec (2.24 MB/sec), 2444.51 ms avg latency, 3501.00 ms max latency, 2399 ms 50th, 3392 ms 95th, 3483 ms 99th, 3501 ms 99.9th.
"""

CONSUMER_OUT = """\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-12-04 20:25:10:054, 2026-12-04 20:25:10:911, 12.2070, 14.2439, 50000, 58343.0572, 452, 405, 30.1408, 123456.7901
"""

PGBENCH_OUT = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
number of clients: 4
number of transactions actually processed: 15701
number of failed transactions: 0 (0.000%)
latency average = 0.746 ms
latency stddev = 0.369 ms
initial connection time = 26.266 ms
tps = 5275.492530 (without initial connection time)
progress: 1.0 s, 5277.9 tps, lat 0.727 ms stddev 0.355, 0 failed
"""


def test_producer_summary_and_steady_state(cc: ModuleType) -> None:
    out = cc.parse_producer_perf(PRODUCER_OUT)
    assert out["all"]["records"] == 50000 and out["all"]["rate"] == pytest.approx(8869.966294)
    assert (out["all"]["p50"], out["all"]["p99"]) == (2254, 3482)
    assert out["steady"]["records"] == 45000 and out["steady"]["p99"] == 3483
    assert cc.parse_producer_intervals(PRODUCER_OUT) == [286.0, 7478.6, 13990.0]


def test_producer_without_summary_is_an_error(cc: ModuleType) -> None:
    with pytest.raises(cc.MeasureError, match="no summary line"):
        cc.parse_producer_perf(
            "286 records sent, 286.0 records/sec (0.07 MB/sec), 954.2 ms avg latency, 996.0 ms max latency.\n"
        )


def test_consumer_columns_by_header(cc: ModuleType) -> None:
    cols = cc.parse_consumer_perf("[2026] WARN something (x)\n" + CONSUMER_OUT)
    assert cols["fetch.nMsg.sec"] == "123456.7901"
    assert cols["data.consumed.in.nMsg"] == "50000"
    assert cols["rebalance.time.ms"] == "452"
    with pytest.raises(cc.MeasureError):
        cc.parse_consumer_perf("no result\n")


def test_pgbench_summary(cc: ModuleType) -> None:
    out = cc.parse_pgbench_summary(PGBENCH_OUT)
    assert out == {
        "transactions": 15701.0,
        "failed": 0.0,
        "latency_avg_ms": 0.746,
        "latency_stddev_ms": 0.369,
        "tps": 5275.49253,
    }
    with pytest.raises(cc.MeasureError, match="no tps"):
        cc.parse_pgbench_summary("pgbench: error: connection refused\n")


def test_java_client_props_maps_drops_and_renames(cc: ModuleType) -> None:
    props = cc.java_client_props(
        {
            "bootstrap.servers": "b:1",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            "log_level": 3,
            "fetch.wait.max.ms": 5,
        },
        {"bootstrap.servers": "flag"},
    )
    assert props.props == {
        "acks": "all",
        "enable.idempotence": "true",
        "linger.ms": "1",
        "fetch.max.wait.ms": "5",
    }
    assert props.dropped == {"bootstrap.servers": "flag", "log_level": "librdkafka only"}
    assert props.renamed == {"fetch.wait.max.ms": "fetch.max.wait.ms"}


def test_flock_holders_matches_the_inode(cc: ModuleType) -> None:
    locks = (
        "1: POSIX  ADVISORY  READ 24952 fe:00:843888 0 0\n"
        "7: FLOCK  ADVISORY  WRITE 24335 fe:00:9986061 0 EOF\n"
        "8: FLOCK  ADVISORY  WRITE 4242 fe:00:9978604 0 EOF\n"
        "8: -> FLOCK  ADVISORY  WRITE 4343 fe:00:9978604 0 EOF\n"
    )
    assert cc.flock_holders(locks, 9978604) == [4242]
    assert cc.flock_holders(locks, 1) == []


def test_merge_entries_replaces_by_component_in_order(cc: ModuleType) -> None:
    old = [
        {"component": "postgres-insert", "rate_per_s": 1},
        {"component": "kafka-producer", "rate_per_s": 2},
    ]
    new = [
        {"component": "postgres-insert", "rate_per_s": 3},
        {"component": "kafka-consumer", "rate_per_s": 4},
    ]
    merged = cc.merge_entries(old, new)
    assert [(e["component"], e["rate_per_s"]) for e in merged] == [
        ("kafka-producer", 2),
        ("kafka-consumer", 4),
        ("postgres-insert", 3),
    ]


def test_percentiles(cc: ModuleType) -> None:
    assert cc.percentiles_ms([]) == (None, None)
    p50, p99 = cc.percentiles_ms(list(range(1, 101)))
    assert p50 == pytest.approx(50.5) and p99 == pytest.approx(99.01)


def test_only_accepts_known_names(cc: ModuleType) -> None:
    args = cc.parse_args(["--only", "postgres-insert,kafka-producer"])
    assert args.components == ["kafka-producer", "postgres-insert"]
    assert cc.parse_args([]).components == list(cc.COMPONENTS)
    with pytest.raises(SystemExit):
        cc.parse_args(["--only", "nope"])
