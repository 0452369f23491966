"""A stack is one folder: a fixture stack outside the package (tests/fixtures/stacks/toy), named
only by HOPSCOPE_STACK_PATH, is discovered, benched and run through the experiment, and no
file of the repository outside that folder names it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from hopscope.cli import app
from hopscope.commands.services import expand_stacks
from hopscope.core.rundir import CROSSCHECKS, EXPERIMENT, LEDGER, MANIFEST, PHASES_DIR
from hopscope.experiment.resources import LOADGEN
from hopscope.experiment.study import (
    Phase,
    Profile,
    fairness_expected,
    required_services,
    run_experiment,
    run_phase,
)
from hopscope.pipelines.stack import (
    STACK_PATH_ENV,
    StackError,
    UnknownStackError,
    discover_stacks,
    load_stack,
    read_stack,
)
from hopscope.pipelines.workload import load_workload

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "stacks"
TOY = FIXTURES / "toy"


@pytest.fixture
def toy_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(STACK_PATH_ENV, str(FIXTURES))  # a folder of stack folders
    monkeypatch.setenv("HOPSCOPE_STATE_DIR", str(tmp_path / "state"))  # deploy's PID files: none run here
    # traced phases export to nothing that listens, and give up fast
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setattr("hopscope.experiment.study.collector_endpoint", lambda: "http://127.0.0.1:9")
    monkeypatch.setattr("hopscope.experiment.study.collector_runs_root", lambda: None)
    return FIXTURES


def test_toy_is_discovered_only_through_the_stack_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STACK_PATH_ENV, raising=False)
    assert "toy" not in discover_stacks()
    assert list(discover_stacks())[:2] == ["kafka", "harper"]  # declared order
    with pytest.raises(UnknownStackError, match=r"unknown stack 'toy'; discovered stacks: kafka, harper"):
        load_stack("toy")
    monkeypatch.setenv(STACK_PATH_ENV, str(TOY))  # the stack folder itself works too
    toy = load_stack("toy")
    assert toy.folder == TOY and toy.spec.services == ()
    assert [f["control"] for f in fairness_expected([toy])] == ["toy delivery delay (ms)"]
    assert required_services([toy, load_stack("kafka")]) == [
        "postgres",
        "redis",
        "kafka",
        "connect",
        "collector",
    ]


def test_a_bad_declaration_names_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "stack.yaml").write_text("name: bad\ndriver: nocolon\nservices: [x]\nworkloads: {}\n")
    monkeypatch.setenv(STACK_PATH_ENV, str(bad))
    with pytest.raises(StackError) as err:
        discover_stacks()
    text = str(err.value)
    assert str(bad / "stack.yaml") in text and "driver:" in text and "workloads:" in text


def _write_stack(folder: Path, crosschecks: str) -> Path:
    folder.mkdir()
    (folder / "stack.yaml").write_text(
        "name: other\ndriver: driver:D\n"
        f"crosschecks: {crosschecks}\n"
        "workloads: {fanout: {hops: [{name: a}, {name: 'wait:b'}, {name: b}]}}\n"
    )
    return folder


def test_crosscheck_declarations_bare_or_with_their_traced_figure(tmp_path: Path) -> None:
    bare = read_stack(_write_stack(tmp_path / "bare", "[pgbench, 'checks:mine']"))
    assert [(c.check, c.result_name, c.label, c.traced) for c in bare.spec.crosschecks] == [
        ("pgbench", "pgbench", "", None),
        ("checks:mine", "mine", "", None),
    ]
    assert bare.spec.crosschecks[1].report_info() == {"label": "mine", "traced": None}
    assert bare.report_info() == {
        "description": "",
        "point_read_label": "",
        "read_back_label": "",
        "durability": {},
        "control": None,
    }
    full = read_stack(
        _write_stack(
            tmp_path / "full",
            "[{check: pgbench, label: L, traced: {measure: partial_sum, "
            "candidates: [{workload: fanout, hop: 'wait:b'}]}}]",
        )
    )
    assert full.spec.crosschecks[0].report_info() == {
        "label": "L",
        "traced": {
            "measure": "partial_sum",
            "candidates": [{"workload": "fanout", "hop": "wait:b"}],
            "what": "",
        },
    }
    for bad, field in (
        ("[{check: pgbench, traced: {measure: hop, candidates: [{workload: fanout, hop: nope}]}}]",
         "crosschecks.0.traced.candidates.0: hop 'nope' is not a hop of workload 'fanout'"),
        ("[{check: pgbench, traced: {measure: hop, candidates: [{workload: ingest, hop: a}]}}]",
         "crosschecks.0.traced.candidates.0: workload 'ingest' is not among the declared workloads"),
        ("[{check: pgbench, traced: {measure: mean, candidates: [{workload: fanout, hop: a}]}}]",
         "crosschecks.0.traced.measure"),
        ("[{check: pgbench, traced: {measure: hop, candidates: []}}]", "crosschecks.0.traced.candidates"),
        ("[{check: pgbench, lable: x}]", "crosschecks.0.lable"),
        ("[pgbench, pgbench]", "crosschecks: more than one check named ['pgbench']"),
    ):  # fmt: skip
        folder = _write_stack(tmp_path / f"bad{len(list(tmp_path.iterdir()))}", bad)
        with pytest.raises(StackError) as err:
            read_stack(folder)
        assert str(folder / "stack.yaml") in str(err.value) and field in str(err.value), str(err.value)


def test_bench_runs_the_toy_stack(toy_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ["bench", "--stack", "toy", "--workload", "write_notify", "--rate", "50", "--duration", "2"]
    res = CliRunner().invoke(
        app, [*args, "--warmup", "0", "--no-tracing", "--no-progress", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    ledger = pq.read_table(out / LEDGER).to_pydict()
    manifest = json.loads((out / MANIFEST).read_text())
    # a Poisson schedule of 50 events/s for 2 s, every event delivered to the 3 subscribers
    assert len(ledger["outcome"]) == manifest["load"]["sent_events"] > 50
    assert set(ledger["outcome"]) == {"delivered"} and {len(r) for r in ledger["receipts"]} == {3}
    assert manifest["driver"]["delay_ms"] == 2.0 and manifest["simulation"] is False
    assert manifest["expected_hops"] == {
        "toy": {"write_notify": ["toy.write", "wait:toy.receive", "toy.receive"]}
    }
    bad = CliRunner().invoke(app, ["bench", "--stack", "toy", "--workload", "ingest", "--no-tracing"])
    assert bad.exit_code == 2 and "declares no hops for workload 'ingest'" in bad.output


def test_the_experiment_runs_on_the_toy_stack(toy_path: Path, tmp_path: Path) -> None:
    profile = Profile(
        name="toy",
        repeat=1,
        overhead_ab=True,
        crosschecks=True,
        span_flush_s=0,
        defaults={"rate": 50, "duration_s": 1, "warmup_s": 0, "drain_timeout_s": 2},
        workloads={"write_notify": {}, "fanout": {}, "ingest": {}},  # toy declares no ingest hops
    )
    result = run_experiment(
        profile,
        out=tmp_path / "run",
        stacks=["toy"],
        start_services=False,
        analyze=True,
        console=Console(quiet=True),
    )
    assert [p.phase.label for p in result.phases] == [
        "toy-write_notify-r0", "toy-write_notify-r0-notrace", "toy-fanout-r0", "toy-fanout-r0-notrace",
    ]  # fmt: skip
    assert not result.failed, [p.error for p in result.failed]
    # no span reached the run (tracing went nowhere): the report is built from the ledgers alone
    assert result.report is not None and result.report.exists(), result.report_error
    run = result.run_dir
    for name in (MANIFEST, LEDGER, EXPERIMENT, CROSSCHECKS):
        assert (run / name).exists(), name
    assert len(list((run / PHASES_DIR).iterdir())) == 4
    assert all(p.figures["outcomes"] == {"delivered": p.figures["events"]} for p in result.phases)
    experiment = json.loads((run / EXPERIMENT).read_text())
    assert experiment["stacks"] == ["toy"] and experiment["skipped"] == ["toy/ingest"]
    assert experiment["fairness_expected"] == [
        {"control": "toy delivery delay (ms)", "expected": "2", "toy": "delay_ms"}
    ]
    assert experiment["services_fairness"] == {"toy": {"delay_ms": 2}}
    assert all(p["resources"]["services"][LOADGEN]["cpu_s"] > 0 for p in experiment["phases"])
    # each result carries what the report needs: its stack, its label, the traced figure it is compared with
    assert experiment["crosschecks"]["echo"] == {
        "status": "ok", "tool": "echo", "phases": 4, "p50_ms": 2.0, "p99_ms": 2.0,
        "stack": "toy", "label": "toy echo",
        "traced": {"measure": "hop", "candidates": [{"workload": "write_notify", "hop": "toy.write"}],
                   "what": "{hop} (the write)"},
    }  # fmt: skip
    assert json.loads((run / CROSSCHECKS).read_text()) == experiment["crosschecks"]
    assert experiment["stack_info"]["toy"]["point_read_label"] == "toy lookup"
    report = (run / "report.md").read_text()
    checks = report.split("## Independent cross-checks", 1)[1]
    assert "| toy echo | ok | 2.00 | 2.00 | no traced data |" in checks  # no span reached this run
    assert "(the toy driver's delay)" in report  # the fairness table's read-back wording
    assert "## Resources and host load" in report
    manifest = json.loads((run / MANIFEST).read_text())
    assert set(manifest["expected_hops"]["toy"]) == {"write_notify", "fanout"}


def test_a_phase_records_its_resources(
    toy_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The phase's record: this process (load generator) burnt CPU for the events it sent; the
    services the stack declares and the telemetry's, none running here, are said not running."""
    folder = tmp_path / "stacks" / "toy_svc"
    shutil.copytree(TOY, folder)
    decl = (folder / "stack.yaml").read_text()
    (folder / "stack.yaml").write_text(
        decl.replace("name: toy\n", "name: toy_svc\n").replace("services: []", "services: [redis]")
    )
    monkeypatch.setenv(STACK_PATH_ENV, str(folder.parent))
    workload = load_workload(
        "write_notify", {"rate": 50, "duration_s": 1, "warmup_s": 0, "drain_timeout_s": 2}
    )
    res = run_phase(
        Phase("toy_svc", "write_notify", 0, False), workload, tmp_path / "phases", "t", Console(quiet=True)
    )
    assert res.status == "ok", res.error
    rec = res.to_json()["resources"]
    assert rec["events"] == res.load["sent_events"] > 0
    assert rec["services"][LOADGEN]["cpu_s"] > 0 and rec["services"][LOADGEN]["cpu_ms_per_event"] > 0
    assert rec["services"]["redis"] == {
        "role": "stack",
        "state": "not running",
        "cpu_s": None,
        "cpu_ms_per_event": None,
        "peak_rss_mb": None,
        "processes": 0,
    }
    assert {"collector", "jaeger", "prometheus"} <= {
        n for n, s in rec["services"].items() if s["role"] == "telemetry"
    }
    lag = res.figures["schedule_lag_ms"]
    assert lag["count"] == res.figures["events"] and rec["schedule_lag_p99_ms"] == lag["p99"]
    assert rec["host_bound"] == bool(rec["host_bound_reasons"])
    assert rec["host_cpu"]["samples"] and json.dumps(rec)


def test_no_file_outside_the_toy_folder_names_it() -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    mine = {TOY.relative_to(ROOT).as_posix(), Path(__file__).relative_to(ROOT).as_posix()}
    named = subprocess.run(
        ["grep", "-lw", "toy", "--", *[f for f in files if not any(f.startswith(m) for m in mine)]],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    assert not named, f"files outside {TOY} that name the toy stack: {named}"


def test_up_only_expands_a_stack_into_its_declared_services(toy_path: Path) -> None:
    assert expand_stacks("kafka-stack,telemetry") == "postgres,redis,kafka,connect,telemetry"
    assert expand_stacks("harper-stack,collector,harper") == "harper,collector"
    assert expand_stacks("toy-stack") == ""  # a stack that needs no service
    assert expand_stacks("redis") == "redis" and expand_stacks(None) is None


def test_default_stacks_fairness_and_services_come_from_the_declarations() -> None:
    from hopscope.experiment.study import resolve_stacks

    shipped = [s for s in resolve_stacks(None) if s.name in ("kafka", "harper")]
    assert [s.name for s in shipped] == ["kafka", "harper"]
    rows = fairness_expected(shipped)
    assert rows[0] == {
        "control": "replication factor",
        "expected": "3",
        "kafka": "topics[].replication_factor",
    }
    assert rows[-1] == {"control": "Harper nodes", "expected": "3", "harper": "node_count"}
    # Kafka: 13 controls of durability and platform + 14 tuned settings (stack.yaml); Harper: 2
    assert len(rows) == 29
    # the tuning leaves batch.size to each client by default: said so, not "not read back"
    assert [r["control"] for r in rows if r.get("client_default")] == [
        "producer batch.size", "Streams producer batch.size", "Debezium producer batch.size",
    ]  # fmt: skip
    assert required_services(shipped) == ["postgres", "redis", "kafka", "connect", "harper", "collector"]


def test_a_control_stack_names_its_base_and_the_report_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STACK_PATH_ENV, raising=False)
    info = load_stack("kafka-node").report_info()["control"]
    assert info == {"of": "kafka", "varies": "its glue services in Node.js instead of Python"}
    assert load_stack("harper").report_info()["control"] is None
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "stack.yaml").write_text(
        "name: stray\ndriver: driver:D\ncontrol: {of: nosuch, varies: x}\nworkloads: {fanout: {hops: [{name: a}]}}\n"
    )
    monkeypatch.setenv(STACK_PATH_ENV, str(stray))
    with pytest.raises(
        StackError, match=r"stray/stack.yaml: control.of 'nosuch' is not another stack \(known: "
    ):
        discover_stacks()
