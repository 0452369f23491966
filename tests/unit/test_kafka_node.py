"""The kafka-node stack (issue #17): the Kafka stack's glue in Node.js, declared in its own folder.

No services: the declaration against the kafka stack's, the driver's refusals before any load,
the install step's errors and cache key, and the config a Node.js glue process gets.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from hopscope.pipelines import stack as stack_mod
from hopscope.pipelines.bench import resolve_bench
from hopscope.pipelines.driver import PreflightError
from hopscope.pipelines.kafka.tuning import KafkaOptions
from hopscope.pipelines.kafka_node import node_glue
from hopscope.pipelines.kafka_node.driver import GLUE_WORKLOADS, KafkaNodeDriver
from hopscope.pipelines.stack import StackError, StackSpec, load_stack
from hopscope.pipelines.workload import load_workload


def test_declared_as_its_own_stack_with_the_kafka_stacks_hops() -> None:
    node, kafka = load_stack("kafka-node"), load_stack("kafka")
    assert node.driver_factory() is KafkaNodeDriver
    assert node.package == "hopscope.pipelines.kafka_node"
    assert node.spec.services == kafka.spec.services
    assert set(node.spec.workloads) == set(GLUE_WORKLOADS)
    # same hop names, sources and durability: the analysis treats both alike
    for w in GLUE_WORKLOADS:
        assert node.hops(w).model_dump() == kafka.hops(w).model_dump()
    # the same options model: a profile tunes both the same way
    assert node.resolve(node.spec.options, "options") is KafkaOptions
    assert node.driver_options({}) == kafka.driver_options({})
    # every control the Python glue's runs read back, less the Streams app's (no aggregate here)
    kafka_rows = {(c.control, c.read_back) for c in kafka.spec.fairness if "Streams" not in c.control}
    node_rows = {(c.control, c.read_back) for c in node.spec.fairness}
    assert node_rows - kafka_rows == {("glue Kafka client", "consumers[].library")}
    assert kafka_rows <= node_rows


def test_stack_names_may_join_identifiers_with_hyphens() -> None:
    base = {"driver": "driver:D", "workloads": {"fanout": {"hops": [{"name": "a"}]}}}
    assert StackSpec.model_validate({**base, "name": "kafka-node"}).name == "kafka-node"
    for bad in ("-x", "a--b", "a b", "x-", "9x", "a.b"):
        with pytest.raises(ValueError, match="identifier"):
            StackSpec.model_validate({**base, "name": bad})
    # an out-of-tree stack of such a name is still importable
    spec = StackSpec.model_validate({**base, "name": "my-stack"})
    assert stack_mod.Stack(spec, Path("/elsewhere/my-stack")).package == "hopscope_stack_my_stack"


def test_workloads_without_node_glue_are_refused_before_any_load() -> None:
    with pytest.raises(StackError, match="declares no hops for workload 'aggregate'"):
        resolve_bench("kafka-node", "aggregate", {})
    with pytest.raises(PreflightError, match=r"workload 'aggregate' has no Node\.js glue"):
        KafkaNodeDriver().preflight(load_workload("aggregate"))


def test_a_compression_the_node_consumer_cannot_read_is_refused() -> None:
    driver = KafkaNodeDriver(tuning={"producer": {"compression": "zstd"}})
    with pytest.raises(PreflightError, match=r"compression 'zstd'.*reads only none, gzip, lz4"):
        driver.preflight(load_workload("fanout"))


def test_missing_node_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "node" else f"/usr/bin/{tool}")
    with pytest.raises(node_glue.NodeGlueError, match=r"needs node on PATH \(Node.js >= 20 with npm\)"):
        node_glue.ensure_installed(tmp_path)
    driver = KafkaNodeDriver()
    monkeypatch.setattr(driver.ctx.config, "cache_dir", tmp_path)
    with pytest.raises(PreflightError, match=r"kafka-node.glue.*needs node on PATH"):
        driver.preflight(load_workload("write_notify"))


def test_an_old_node_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(
        node_glue.subprocess,
        "run",
        lambda *a, **k: SimpleNamespace(returncode=0, stdout="v18.19.0\n", stderr=""),
    )
    with pytest.raises(node_glue.NodeGlueError, match=r"needs Node.js >= 20, found v18.19.0"):
        node_glue.check_node()


def test_the_install_is_keyed_by_the_sources_and_the_lock(tmp_path: Path) -> None:
    src = tmp_path / "glue"
    shutil.copytree(node_glue.SOURCE_DIR, src, ignore=shutil.ignore_patterns("node_modules"))
    files = {p.relative_to(src).as_posix() for p in node_glue.source_files(src)}
    assert {"package.json", "package-lock.json", "main.js", "src/glue.js", "src/tracer.js"} <= files
    assert not any(f.startswith(("test/", "node_modules/")) for f in files)
    before = node_glue.source_hash(src)
    (src / "test" / "extra.test.js").write_text("// not shipped\n")
    assert node_glue.source_hash(src) == before
    (src / "src" / "glue.js").write_text((src / "src" / "glue.js").read_text() + "\n")
    assert node_glue.source_hash(src) != before
    assert node_glue.install_dir(tmp_path, src).parent == tmp_path / "kafka-node-glue"


def test_an_installed_glue_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = node_glue.install_dir(tmp_path)
    out.mkdir(parents=True)
    (out / ".installed").write_text("x\n")
    monkeypatch.setattr(node_glue, "check_node", lambda: pytest.fail("no check for an installed glue"))
    assert node_glue.ensure_installed(tmp_path) == out
    assert node_glue.command(out, "router") == ["node", str(out / "main.js"), "router"]


def test_the_glue_config_names_the_stack_and_the_collectors_http_endpoint() -> None:
    driver = KafkaNodeDriver(
        otlp_http_endpoint="http://127.0.0.1:4318/", tuning={"consumer": {"fetch_wait_max_ms": 2}}
    )
    driver.run = SimpleNamespace(run_id="run-1")  # type: ignore[assignment]
    driver.kafka = SimpleNamespace(bootstrap=lambda: "127.0.0.1:9092")  # type: ignore[assignment]
    cfg = driver.glue_config("router", topic="t", redis_url="redis://x", channel_prefix="p:", filters_key="k")
    assert cfg["stack"] == "kafka-node"
    assert cfg["otlp_traces_url"] == "http://127.0.0.1:4318/v1/traces"
    assert cfg["tuning"]["consumer"]["fetch_wait_max_ms"] == 2
    assert {k: cfg[k] for k in ("role", "run_id", "topic", "filters_key")} == {
        "role": "router",
        "run_id": "run-1",
        "topic": "t",
        "filters_key": "k",
    }


def test_profiles_choose_kafka_nodes_workloads() -> None:
    from hopscope.experiment.study import (
        Profile,
        load_profile,
        plan_phases,
        resolve_stack_options,
        resolve_stacks,
        runnable_phases,
    )

    stacks = resolve_stacks(["kafka", "harper", "kafka-node"])
    names = ["write_notify", "fanout", "aggregate", "ingest"]
    plan = plan_phases([s.name for s in stacks], names, 1, False, None)
    # the quick profile: the headline workload on all three stacks, the others on two
    quick = load_profile("quick")
    kept, skipped = runnable_phases(plan, stacks, quick)
    assert {(p.stack, p.workload) for p in kept if p.stack == "kafka-node"} == {
        ("kafka-node", "write_notify")
    }
    assert {p.workload for p in kept if p.stack == "harper"} == set(names)
    assert skipped == {
        "kafka-node/aggregate": "the stack declares no hops for the workload",
        "kafka-node/fanout": "not in the profile's stack_workloads",
        "kafka-node/ingest": "not in the profile's stack_workloads",
    }
    # the full profile: every workload with a Node.js glue
    kept, _ = runnable_phases(plan, stacks, load_profile("full"))
    assert {p.workload for p in kept if p.stack == "kafka-node"} == set(GLUE_WORKLOADS)
    # the low-latency profile tunes kafka-node's clients as kafka's
    options = resolve_stack_options(load_profile("kafka-low-latency"))
    assert options["kafka-node"] == options["kafka"]
    with pytest.raises(ValueError, match=r"stack_workloads.kafka-node names workload\(s\) \['ingest'\]"):
        Profile.model_validate(
            {"name": "x", "workloads": {"fanout": {}}, "stack_workloads": {"kafka-node": ["ingest"]}}
        )


def test_a_profile_naming_an_unknown_stack_in_stack_workloads_is_refused(tmp_path: Path) -> None:
    from hopscope.experiment.study import ProfileError, load_profile

    path = tmp_path / "p.yaml"
    path.write_text("name: p\nworkloads: {fanout: {}}\nstack_workloads: {nope: [fanout]}\n")
    with pytest.raises(ProfileError, match="stack_workloads: unknown stack 'nope'"):
        load_profile(path)


def test_a_glue_process_that_dies_before_ready_fails_at_once(tmp_path: Path) -> None:
    import sys
    import time

    class Dying(KafkaNodeDriver):
        def glue_command(self, role: str) -> tuple[list[str], Path | None]:
            code = "import sys; print('Cannot find package kafkajs', file=sys.stderr); sys.exit(3)"
            return [sys.executable, "-c", code], None

    driver = Dying()
    driver.run = SimpleNamespace(run_id="run-1")  # type: ignore[assignment]
    driver.kafka = SimpleNamespace(bootstrap=lambda: "127.0.0.1:9092")  # type: ignore[assignment]
    driver.log_dir = tmp_path
    started = time.monotonic()
    with pytest.raises(PreflightError, match=r"exited 3 before READY.*Cannot find package kafkajs"):
        driver.spawn("router", topic="t", redis_url="redis://x", channel_prefix="p:", filters_key="k")
    assert time.monotonic() - started < 10
    assert (tmp_path / "kafka-node-router.log").is_file()


def test_a_glue_process_of_a_running_console_script_is_not_a_stray() -> None:
    from hopscope.pipelines.kafka.driver import _has_live_bench_parent

    def child_of(pid: int, name: str, argv0: str) -> SimpleNamespace:
        parent = SimpleNamespace(pid=pid, name=lambda: name, cmdline=lambda: [argv0, "run"])
        return SimpleNamespace(parent=lambda: parent)

    # `hopscope run` started by its console script: named "hopscope", run by the interpreter
    assert _has_live_bench_parent(child_of(4242, "hopscope", "/x/.venv/bin/python3.11"))  # type: ignore[arg-type]
    assert _has_live_bench_parent(child_of(4242, "python3.11", "/usr/bin/python3.11"))  # type: ignore[arg-type]
    # orphaned (init or a subreaper), or under something that is no bench
    assert not _has_live_bench_parent(child_of(1, "systemd", "/sbin/init"))  # type: ignore[arg-type]
    assert not _has_live_bench_parent(child_of(4242, "bash", "/bin/bash"))  # type: ignore[arg-type]
