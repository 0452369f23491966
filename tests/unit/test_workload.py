"""Workload files: the shipped ones load, and every kind of bad input gets a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hopscope.pipelines.stack import StackError, load_stack, read_stack
from hopscope.pipelines.workload import (
    POINT_READ,
    WORKLOADS_DIR,
    WorkloadError,
    expected_event_count,
    known_workloads,
    load_workload,
)

SHIPPED = ["aggregate", "fanout", "ingest", "write_notify"]


def test_shipped_workloads_load_and_both_stacks_declare_their_hops() -> None:
    assert known_workloads() == SHIPPED
    for name in SHIPPED:
        w = load_workload(name)
        assert w.name == name
        for stack in ("kafka", "harper"):
            hops = load_stack(stack).expected_hops(w)[name]
            assert hops[-1] != hops[0] and len(hops) == len(set(hops))


def test_write_notify_kafka_hops_follow_the_design() -> None:
    spec = load_stack("kafka").hops("write_notify")
    assert [h.name for h in spec.hops] == [
        "client.insert",
        "pg.commit",
        "debezium.capture",
        "kafka.append",
        "wait:notifier.consume",
        "notifier.consume",
        "redis.publish",
        "wait:subscriber.receive",
        "subscriber.receive",
    ]
    assert [h.name for h in spec.hops if h.derived] == ["pg.commit", "debezium.capture", "kafka.append"]
    assert spec.hops[1].source == "source.ts_us"


def test_fanout_filters_select_the_right_subscribers() -> None:
    w = load_workload("fanout")
    assert w.fanout_width == 6
    assert w.expected_subscribers({"region": "ap", "category": "metrics"}) == ["all"]
    assert w.expected_subscribers({"region": "eu", "category": "metrics"}) == ["all", "eu", "eu-us-metrics"]
    assert w.expected_subscribers({"region": "ap", "category": "alerts"}) == ["all", "ap-alerts", "alerts"]
    assert len(w.field_combinations()) == 6


def test_aggregate_has_point_reads_and_ingest_a_sweep() -> None:
    agg = load_workload("aggregate")
    assert load_stack("harper").expected_hops(agg)[POINT_READ] == ["client.point_read", "harper.get"]
    ingest = load_workload("ingest")
    assert [r for r, _ in ingest.phases()] == [25, 50, 100, 200, 400, 800]
    assert expected_event_count(ingest) == sum(int(r * 35) for r in (25, 50, 100, 200, 400, 800))
    single = load_workload("ingest", {"rate": 300, "duration_s": 2, "warmup_s": 0})
    assert single.phases() == [(300, 2)]


def test_overrides_apply_on_top_of_the_file() -> None:
    w = load_workload(
        "write_notify", {"rate": 50, "duration_s": 3, "schedule": "constant", "subscribers": 5, "seed": None}
    )
    assert (w.rate, w.duration_s, w.schedule, w.fanout_width) == (50, 3, "constant", 5)
    assert w.seed == 1  # None = not given


def test_unknown_workload_lists_known_ones() -> None:
    with pytest.raises(WorkloadError) as err:
        load_workload("write_notfy")
    assert "unknown workload 'write_notfy'" in str(err.value)
    for name in SHIPPED:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"rate": 0}, "rate (from command-line override): Input should be greater than 0"),
        ({"rate": -5}, "rate (from command-line override)"),
        ({"duration_s": 0}, "duration_s (from command-line override): Input should be greater than 0"),
        ({"schedule": "bursty"}, "schedule (from command-line override)"),
        ({"subscribers": 0}, "subscriber count must be >= 1"),
    ],
)
def test_bad_overrides(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(WorkloadError) as err:
        load_workload("fanout", overrides)
    assert fragment in str(err.value) and "fanout.yaml" in str(err.value)


def test_unknown_override_key() -> None:
    with pytest.raises(WorkloadError, match=r"unknown override\(s\) \['rat'\]"):
        load_workload("fanout", {"rat": 1})


def _write(tmp: Path, doc: dict[str, object], name: str = "w") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _base() -> dict[str, object]:
    return yaml.safe_load((WORKLOADS_DIR / "fanout.yaml").read_text()) | {"name": "w"}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {"subscribers": [{"name": "x", "filter": {"region": "mars"}}]},
            "filter region=['mars'] matches nothing",
        ),
        ({"subscribers": [{"name": "x", "filter": {"colour": "red"}}]}, "filters on field 'colour'"),
        ({"subscribers": [{"name": "x"}, {"name": "x"}]}, "subscriber name(s) used twice: ['x']"),
        ({"stacks": {"kafka": {"hops": [{"name": "a"}]}}}, "stacks"),  # hops live in stack.yaml
        ({"payload_bytes": -1}, "payload_bytes"),
        ({"rate_sweep": [100, 0]}, "rate_sweep rates must be > 0"),
        ({"unexpected_key": 1}, "unexpected_key"),
    ],
)
def test_invalid_files_name_file_and_field(tmp_path: Path, change: dict[str, object], fragment: str) -> None:
    path = _write(tmp_path, _base() | change)
    with pytest.raises(WorkloadError) as err:
        load_workload(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_name_must_match_file_in_workloads_dir(tmp_path: Path) -> None:
    _write(tmp_path, _base() | {"name": "other"}, name="w")
    with pytest.raises(WorkloadError, match="field 'name' is 'other' but the file is named 'w'"):
        load_workload("w", workloads_dir=tmp_path)


def test_not_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rate: [1,\n")
    with pytest.raises(WorkloadError, match="not valid YAML"):
        load_workload(bad)


def _stack(tmp: Path, workloads: object, name: str = "nats") -> Path:
    folder = tmp / name
    folder.mkdir()
    doc = {"name": name, "driver": "driver:NatsDriver", "workloads": workloads}
    (folder / "stack.yaml").write_text(yaml.safe_dump(doc))
    return folder


@pytest.mark.parametrize(
    ("hops", "fragment"),
    [
        ([{"name": "a"}, {"name": "wait:b"}, {"name": "c"}], "'wait:b' must be followed by hop 'b'"),
        ([{"name": "a", "derived": True}], "must name its timestamp 'source'"),
        ([{"name": "a"}, {"name": "a"}], "more than once: ['a']"),
        ([], "hops is empty"),
    ],
)
def test_invalid_stack_hops_name_file_and_field(tmp_path: Path, hops: object, fragment: str) -> None:
    folder = _stack(tmp_path, {"fanout": {"hops": hops}})
    with pytest.raises(StackError) as err:
        read_stack(folder)
    assert fragment in str(err.value)
    assert str(folder / "stack.yaml") in str(err.value) and "workloads.fanout.hops" in str(err.value)


def test_unknown_workload_of_a_stack_and_point_reads_without_hops(tmp_path: Path) -> None:
    stack = read_stack(_stack(tmp_path, {"fanout": {"hops": [{"name": "a"}]}}))
    with pytest.raises(StackError, match=r"declares no hops for workload 'ingest' \(declared: \['fanout'\]"):
        stack.hops("ingest")
    with pytest.raises(StackError, match="sets point_read_rate but stack 'nats' declares no point_read_hops"):
        stack.check_workload(load_workload("fanout", {"point_read_rate": 10}))


def test_a_third_stack_is_just_a_folder(tmp_path: Path) -> None:
    stack = read_stack(
        _stack(tmp_path, {"w": {"hops": [{"name": "client.publish"}, {"name": "subscriber.receive"}]}})
    )
    w = load_workload(_write(tmp_path, _base()))
    assert stack.expected_hops(w) == {"w": ["client.publish", "subscriber.receive"]}
    assert stack.root_hops("w") == ("client.publish", "client.publish")
