"""`hopscope run`: every workload on every stack, interleaved, into one run directory.

A *profile* (`experiment/profiles/<name>.yaml`) says which workloads run, at what rates and
for how long, how many repeats, and whether the tracing-off half of the overhead A/B and
the independent cross-checks run. The stacks are the discovered ones (`stack.yaml` folders,
in their declared order) unless the profile or the caller names some. The plan interleaves
them (repeat r: for each workload, each stack in order, the order flipped on odd repeats) so
that machine drift over the run hits every stack alike. What a stack needs (its services,
fairness controls, service read-backs, cross-checks) comes from its declaration.

Each phase is one `hopscope bench` (`run_bench`) into `RUN_DIR/phases/<phase id>/`. A phase
that fails is recorded (stack × workload × repeat, the error) and the run carries on. At the
end the traced phases are merged into the run the analysis reads: their span files under
`RUN_DIR/spans/<phase id>/`, their ledgers into `RUN_DIR/ledger.parquet`, and
the manifest with the expected hops of every stack. Per-phase figures from the ledgers
(repeats, overhead, ingest sweep, point reads) go to the run's experiment file
(`hopscope.core.rundir.EXPERIMENT`), which the report's experiment sections read.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.console import Console

from hopscope.analysis.ledger import sweep_steps
from hopscope.analysis.report.experiment_report import write_experiment_report
from hopscope.analysis.report.trace_links import TraceLinks
from hopscope.analysis.run import read_ledger
from hopscope.collector.ingest import ingest_run
from hopscope.core.rundir import (
    EXPERIMENT,
    LEDGER,
    MANIFEST,
    PHASES_DIR,
    REPORT_ERROR,
    SPANS_DIR,
    base_manifest,
    create_run_dir,
    table_file,
    update_manifest,
)
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import status, up
from hopscope.pipelines.bench import run_bench
from hopscope.pipelines.capacity import (
    COMPONENTS_FILE,
    Capacity,
    capacity_from_steps,
    rate_warning,
    record_capacities,
)
from hopscope.pipelines.collector_files import collector_runs_root, move_spans
from hopscope.pipelines.stack import Stack, StackError, discover_stacks, find_stack, load_stack
from hopscope.pipelines.workload import WORKLOADS_DIR, Workload, load_workload

from .crosschecks import declared_checks, run_crosschecks
from .phase_stats import phase_figures
from .resources import PhaseMonitor

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
#: Services every traced run needs besides the stacks' own.
TELEMETRY_SERVICES = ("collector",)


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the field."""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    repeat: int = Field(default=1, ge=1)
    #: run every (stack, workload) once more with tracing off, right after its traced phase
    overhead_ab: bool = True
    #: in how many repeats the tracing-off phase runs (None = every repeat)
    overhead_repeats: int | None = Field(default=None, ge=1)
    crosschecks: bool = True
    crosscheck_seconds: float = Field(default=10.0, gt=0)
    #: wait after the last phase so the collector has written every span
    span_flush_s: float = Field(default=5.0, ge=0)
    #: the stacks to run, in order; None = every discovered stack (in its declared order)
    stacks: tuple[str, ...] | None = None
    #: workload overrides applied to every workload (fields of a workload file)
    defaults: dict[str, Any] = Field(default_factory=dict)
    #: workload name → its own overrides (applied after `defaults`); the keys say which run
    workloads: dict[str, dict[str, Any]]
    #: stack name → options for its driver, validated by the model the stack declares
    #: (`options` in its stack.yaml), e.g. `{kafka: {tuning: {producer: {linger_ms: 0}}}}`
    stack_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: stack name → the only workloads it runs in this profile (a stack not named runs every
    #: workload of the profile it declares hops for), e.g. `{kafka-node: [write_notify]}`
    stack_workloads: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _stack_workloads_known(self) -> Profile:
        for stack, names in self.stack_workloads.items():
            unknown = sorted(set(names) - set(self.workloads))
            if unknown:
                raise ValueError(
                    f"stack_workloads.{stack} names workload(s) {unknown} the profile has no settings "
                    f"for (it defines {sorted(self.workloads)})"
                )
        return self


def load_profile(name_or_path: str | Path, profiles_dir: Path = PROFILES_DIR) -> Profile:
    path = Path(name_or_path)
    if not path.suffix:
        path = profiles_dir / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in profiles_dir.glob("*.yaml")))
        raise ProfileError(f"profile {name_or_path!r} not found ({path}); known profiles: {known}")
    try:
        raw = yaml.safe_load(path.read_text())
        profile = Profile.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"field {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ProfileError(f"{path}: {problems}") from exc
    resolve_stack_options(profile, where=str(path))  # a bad stack option fails at load, not mid-run
    for name in profile.stack_workloads:
        try:
            load_stack(name)
        except StackError as exc:
            raise ProfileError(f"{path}: field stack_workloads: {exc}") from exc
    return profile


def resolve_stack_options(
    profile: Profile, stacks: list[Stack] | None = None, where: str | None = None
) -> dict[str, dict[str, Any]]:
    """Each stack's driver options from the profile, validated by the stack's declared model with
    its defaults filled in (`stacks`: those to resolve; None = the stacks the profile names in
    `stack_options`). ProfileError names the profile, the stack and the field."""
    where = where or f"profile {profile.name!r}"
    try:
        chosen = stacks if stacks is not None else [load_stack(n) for n in profile.stack_options]
        return {s.name: s.driver_options(profile.stack_options.get(s.name)) for s in chosen}
    except StackError as exc:
        raise ProfileError(f"{where}: field stack_options: {exc}") from exc


@dataclass(frozen=True)
class Phase:
    stack: str
    workload: str
    repeat: int
    tracing: bool

    @property
    def label(self) -> str:
        return f"{self.stack}-{self.workload}-r{self.repeat}" + ("" if self.tracing else "-notrace")


def plan_phases(
    stacks: list[str], workloads: list[str], repeat: int, overhead_ab: bool, overhead_repeats: int | None
) -> list[Phase]:
    """Interleaved order: per repeat, per workload, each stack traced then (A/B) untraced;
    the stack order flips on odd repeats so neither stack always runs first."""
    phases: list[Phase] = []
    for r in range(repeat):
        order = stacks if r % 2 == 0 else list(reversed(stacks))
        ab = overhead_ab and (overhead_repeats is None or r < overhead_repeats)
        for w in workloads:
            for s in order:
                phases.append(Phase(s, w, r, True))
                if ab:
                    phases.append(Phase(s, w, r, False))
    return phases


def runnable_phases(
    plan: list[Phase], stacks: list[Stack], profile: Profile | None = None
) -> tuple[list[Phase], dict[str, str]]:
    """The phases a stack can and should run: a stack runs the workloads it declares hops for,
    and of those only the ones the profile's `stack_workloads` lists for it (when it lists any).
    Returns (phases, skipped `stack/workload` → why, in pair order)."""
    declared = {s.name: set(s.spec.workloads) for s in stacks}
    chosen = dict(profile.stack_workloads) if profile is not None else {}
    kept: list[Phase] = []
    skipped: dict[str, str] = {}
    for p in plan:
        pair = f"{p.stack}/{p.workload}"
        if p.workload not in declared[p.stack]:
            skipped.setdefault(pair, "the stack declares no hops for the workload")
        elif p.stack in chosen and p.workload not in chosen[p.stack]:
            skipped.setdefault(pair, "not in the profile's stack_workloads")
        else:
            kept.append(p)
    return kept, dict(sorted(skipped.items()))


@dataclass
class PhaseResult:
    phase: Phase
    phase_id: str
    status: str  # ok | failed
    seconds: float
    error: str | None = None
    error_kind: str | None = None
    run_dir: str | None = None
    driver: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    span_files: int = 0
    #: CPU and peak memory per service, host CPU, host-bound (`resources.PhaseMonitor.record`)
    resources: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["phase"] = asdict(self.phase) | {"label": self.phase.label}
        return d


@dataclass
class ExperimentResult:
    run_dir: Path
    run_id: str
    phases: list[PhaseResult]
    seconds: float
    crosschecks: dict[str, Any]
    report: Path | None
    report_error: str | None
    up_error: str | None

    @property
    def failed(self) -> list[PhaseResult]:
        return [p for p in self.phases if p.status != "ok"]

    @property
    def without_spans(self) -> list[PhaseResult]:
        """Traced phases whose spans never reached the run (collector down or refusing data)."""
        return [p for p in self.phases if p.status == "ok" and p.phase.tracing and p.span_files == 0]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.without_spans and self.report is not None and not self.up_error


# --- phases ----------------------------------------------------------------------------------


def workload_for(profile: Profile, name: str, workloads_dir: Path = WORKLOADS_DIR) -> Workload:
    overrides = {**profile.defaults, **(profile.workloads.get(name) or {})}
    # A profile rate is the single-rate default; the ingest sweep stays unless the workload says.
    base = load_workload(name, None, workloads_dir)
    if base.rate_sweep and "rate_sweep" not in (profile.workloads.get(name) or {}):
        overrides.pop("rate", None)
    return load_workload(name, overrides, workloads_dir)


def tuned_settings(options: dict[str, dict[str, Any]], stacks: list[Stack]) -> dict[str, dict[str, Any]]:
    """Per stack, the driver options the profile moved away from the stack's defaults, as
    dotted paths (`tuning.producer.linger_ms` → 0): what the headline names."""
    out: dict[str, dict[str, Any]] = {}
    for s in stacks:
        changed = {
            k: v
            for k, v in _flatten(options.get(s.name) or {}).items()
            if _flatten(s.driver_options()).get(k, object()) != v
        }
        if changed:
            out[s.name] = changed
    return out


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_phase(
    phase: Phase,
    workload: Workload,
    phases_dir: Path,
    run_token: str,
    console: Console,
    driver_options: dict[str, Any] | None = None,
) -> PhaseResult:
    phase_id = f"{phase.label}-{run_token}"  # also the phase's run_id: unique in the collector's runs root
    out = phases_dir / phase_id
    t0 = time.monotonic()
    stack = find_stack(phase.stack)
    monitor = PhaseMonitor(stack.spec.services if stack else ())  # + the telemetry, + this process
    try:
        with monitor:
            run_dir, result = run_bench(
                phase.stack,
                workload,
                out=out,
                tracing=phase.tracing,
                otlp_endpoint=collector_endpoint(),
                progress=True,
                console=console,
                collect_spans=False,  # the study moves each phase's spans itself (gather_spans)
                driver_options=driver_options,  # the profile's, validated (resolve_stack_options)
            )
    except Exception as exc:  # a failing stack is recorded for its phase; the others still run
        console.print(f"[red]phase {phase.label} failed:[/] {type(exc).__name__}: {exc}")
        (phases_dir / f"{phase_id}.error.txt").write_text(traceback.format_exc())
        return PhaseResult(
            phase,
            phase_id,
            "failed",
            time.monotonic() - t0,
            error=f"{type(exc).__name__}: {exc}",
            error_kind=type(exc).__name__,
            run_dir=str(out) if out.exists() else None,
            resources=monitor.record(None),
        )
    manifest = json.loads((run_dir / MANIFEST).read_text())
    figures = phase_figures(run_dir / LEDGER, workload.name)
    lag_p99 = (figures.get("schedule_lag_ms") or {}).get("p99")
    return PhaseResult(
        phase,
        phase_id,
        "ok",
        time.monotonic() - t0,
        run_dir=str(run_dir),
        driver=manifest.get("driver") or {},
        load=manifest.get("load") or {},
        figures=figures,
        resources=monitor.record(result.sent_events, lag_p99),
    )


# --- spans from the collector ----------------------------------------------------------------


def collector_endpoint() -> str | None:
    """The collector's OTLP endpoint from the deploy config (the generator's default is 4317)."""
    try:
        return load_config().collector.otlp_grpc_endpoint
    except Exception:  # no deploy config: the tracing library's default
        return None


def gather_spans(result: PhaseResult, run_dir: Path, runs_root: Path | None) -> int:
    """Move the phase's collector files into RUN_DIR/spans/<phase id>/."""
    if runs_root is None or not result.phase.tracing:
        return 0
    return move_spans(runs_root, result.phase_id, run_dir / SPANS_DIR / result.phase_id)


# --- merge -------------------------------------------------------------------------------------


def merge_ledgers(results: list[PhaseResult], run_dir: Path) -> int:
    """The traced phases' ledgers into the run's, each row saying which phase (`phase_id`) and
    repeat (`repeat`) it came from (rows keep their `warmup` mark): the verdicts' repeats."""
    tables = []
    for r in results:
        if r.status == "ok" and r.phase.tracing and r.run_dir:
            path = Path(r.run_dir) / LEDGER
            if path.exists():
                t = pq.read_table(path)
                for name, value, typ in (
                    ("phase_id", r.phase_id, pa.string()),
                    ("repeat", r.phase.repeat, pa.int32()),
                ):
                    if name in t.column_names:
                        t = t.drop_columns([name])
                    t = t.append_column(pa.field(name, typ), pa.array([value] * t.num_rows, typ))
                tables.append(t)
    if not tables:
        return 0
    merged = pa.concat_tables(tables, promote_options="permissive")
    pq.write_table(merged, run_dir / LEDGER, compression="zstd")
    return merged.num_rows


def expected_hops(stacks: list[Stack], workloads: dict[str, Workload]) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for s in stacks:
        for w in workloads.values():
            if w.name in s.spec.workloads:
                out.setdefault(s.name, {}).update(s.expected_hops(w))
    return out


# --- what the stacks declare -------------------------------------------------------------------


def resolve_stacks(names: list[str] | tuple[str, ...] | None) -> list[Stack]:
    """The named stacks (UnknownStackError lists the discovered ones), or every discovered one."""
    if names is None:
        return list(discover_stacks().values())
    return [load_stack(n) for n in names]


def required_services(stacks: list[Stack]) -> list[str]:
    """The services the stacks declare, then the telemetry's, each once."""
    return list(dict.fromkeys([*(svc for s in stacks for svc in s.spec.services), *TELEMETRY_SERVICES]))


def fairness_expected(
    stacks: list[Stack], options: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The study's controls as the report reads them: per control what it must be and, per
    stack that declares it, where the read-back value is in that stack's driver manifest. A
    tuned setting's expected value is the run's (`options`: each stack's driver options; a
    stack not in it runs on its defaults); one the tuning leaves to the client's own default
    is marked `client_default` (the report says so rather than "not read back")."""
    rows: dict[tuple[str, str | None], dict[str, Any]] = {}
    for s in stacks:
        for c, expected in s.fairness_rows((options or {}).get(s.name)):
            row = rows.setdefault((c.control, expected), {"control": c.control, "expected": expected})
            row[s.name] = c.read_back
            if c.expected_from is not None and expected is None:
                row["client_default"] = True
    return list(rows.values())


def stack_info(stacks: list[Stack]) -> dict[str, dict[str, Any]]:
    """Per stack, how the report names it (description, what a point read is, where the
    services' settings are read from): the analysis reads it from the run, never a stack."""
    return {s.name: s.report_info() for s in stacks}


def capacity_warnings(plan: list[Phase], workloads: dict[str, Workload]) -> list[str]:
    """One warning per stack × workload whose single offered rate is above the capacity last
    measured on this host (a sweep is how capacity is found: it is never warned about)."""
    out = []
    for stack, name in dict.fromkeys((p.stack, p.workload) for p in plan):
        wl = workloads[name]
        if len(wl.phases()) == 1 and (w := rate_warning(stack, name, wl.phases()[0][0])):
            out.append(w)
    return out


def read_components_capacity() -> dict[str, Any] | None:
    """This host's standalone component figures (`benchmarks/component_capacity.py`), as the
    run's capacity section shows them beside the pipelines' (None when never measured here)."""
    try:
        path = load_config().state_dir / COMPONENTS_FILE
        return {"path": str(path), "components": json.loads(path.read_text())} if path.exists() else None
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def record_sweep_capacities(run_dir: Path) -> list[Capacity]:
    """Each swept stack × workload's capacity, recorded for this host (bench warns above it)."""
    steps = sweep_steps(read_ledger(run_dir))
    found = [
        capacity_from_steps(str(stack), str(workload), g.to_dict("records"), tracing=True, run_dir=run_dir)
        for (workload, stack), g in steps.groupby(["workload", "stack"], sort=False)
    ]
    if found:
        record_capacities(found)
    return found


def read_services_fairness(stacks: list[Stack]) -> dict[str, Any]:
    """Settings read from the running services themselves (beside what each driver read back),
    by each stack's declared `services_readback`; a failing read-back is recorded as an error."""
    readers = [s for s in stacks if s.spec.services_readback]
    if not readers:
        return {}
    ctx = Context(load_config())
    out: dict[str, Any] = {}
    for s in readers:
        try:
            out[s.name] = s.resolve(s.spec.services_readback or "", "services read-back")(ctx)
        except Exception as exc:  # recorded: the table then shows what the drivers read back
            out[s.name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


# --- the whole run -----------------------------------------------------------------------------


def bring_up(stacks: list[Stack], console: Console) -> str | None:
    """`hopscope up` for the services the chosen stacks declare and the telemetry's; returns an
    error text."""
    try:
        ctx = Context(load_config())
        services = required_services(stacks)
        # Only what is not running: `up` would also (re)check dependencies such as Jaeger,
        # which the run does not need once the collector is up.
        todo = [
            st.service for st in status(ctx, ",".join(services)) if st.state not in ("running", "external")
        ]
        if todo:
            console.print(f"starting {', '.join(todo)} (hopscope up)")
            up(ctx, ",".join(todo), console)
        else:
            console.print("services already running: " + ", ".join(services))
    except Exception as exc:
        console.print(f"[red]hopscope up failed:[/] {exc}")
        return f"{type(exc).__name__}: {exc}"
    return None


def run_experiment(
    profile: Profile,
    *,
    out: Path | None = None,
    stacks: list[str] | None = None,
    workloads: list[str] | None = None,
    repeat: int | None = None,
    start_services: bool = True,
    analyze: bool = True,
    console: Console | None = None,
    workloads_dir: Path = WORKLOADS_DIR,
    on_phase: Callable[[PhaseResult], None] | None = None,
) -> ExperimentResult:
    console = console or Console(stderr=True)
    t0 = time.monotonic()
    chosen = resolve_stacks(stacks or profile.stacks)
    stacks = [s.name for s in chosen]
    if profile.crosschecks:
        for s in chosen:
            declared_checks(s)  # a bad declaration fails now, not after every phase ran
    names = list(workloads or profile.workloads)
    unknown = [w for w in names if w not in profile.workloads]
    if unknown:
        raise ProfileError(
            f"profile {profile.name!r} has no settings for workload(s) {unknown}; "
            f"it defines {sorted(profile.workloads)}"
        )
    resolved = {w: workload_for(profile, w, workloads_dir) for w in names}
    options = resolve_stack_options(profile, chosen)
    repeats = repeat or profile.repeat
    plan = plan_phases(stacks, names, repeats, profile.overhead_ab, profile.overhead_repeats)
    # A stack runs the workloads it declares hops for (and the profile chose for it); the
    # others are skipped, and said so.
    plan, skipped = runnable_phases(plan, chosen, profile)
    if skipped:
        console.print(f"[yellow]skipped[/]: {', '.join(f'{pair} ({why})' for pair, why in skipped.items())}")

    rate_warnings = capacity_warnings(plan, resolved)
    for warning in rate_warnings:
        console.print(f"[yellow]warning:[/] {warning}")

    run_dir, run_id = create_run_dir(out, prefix="run")
    run_token = run_id.rsplit("-", 1)[-1] if out is None else _token()
    phases_dir = run_dir / PHASES_DIR
    phases_dir.mkdir(exist_ok=True)
    update_manifest(
        run_dir,
        **base_manifest(run_id, "run"),
        profile=profile.model_dump(mode="json"),
        stacks=stacks,
        workloads={w: wl.model_dump(mode="json") for w, wl in resolved.items()},
        repeat=repeats,
        plan=[p.label for p in plan],
        expected_hops=expected_hops(chosen, resolved),
    )
    up_error = bring_up(chosen, console) if start_services else None

    results: list[PhaseResult] = []
    for i, phase in enumerate(plan, 1):
        console.rule(f"[bold]phase {i}/{len(plan)}[/]: {phase.label}")
        res = run_phase(
            phase, resolved[phase.workload], phases_dir, run_token, console, options.get(phase.stack) or None
        )
        results.append(res)
        if on_phase:
            on_phase(res)

    crosschecks: dict[str, Any] = {}
    if profile.crosschecks and any(s.spec.crosschecks for s in chosen):
        console.rule("[bold]cross-checks[/]")
        crosschecks = run_crosschecks(run_dir, results, chosen, profile.crosscheck_seconds, console)

    if any(r.phase.tracing and r.status == "ok" for r in results) and profile.span_flush_s:
        console.print(f"waiting {profile.span_flush_s:.0f} s for the collector to write the last spans")
        time.sleep(profile.span_flush_s)
    runs_root = collector_runs_root()
    for r in results:
        r.span_files = gather_spans(r, run_dir, runs_root)
    ledger_rows = merge_ledgers(results, run_dir)

    experiment = {
        "run_id": run_id,
        "profile": profile.name,
        "profile_description": profile.description,
        # each stack's driver options as the phases got them (defaults filled in)
        "stack_options": options,
        "stack_options_tuned": tuned_settings(options, chosen),
        "stacks": stacks,
        "workloads": names,
        "repeat": repeats,
        "up_error": up_error,
        "phases": [r.to_json() for r in results],
        **({"skipped": list(skipped)} if skipped else {}),
        "crosschecks": crosschecks,
        "rate_warnings": rate_warnings,
        "fairness_expected": fairness_expected(chosen, options),
        "stack_info": stack_info(chosen),
        "capacity_parts": {
            s.name: {w: h.capacity_parts for w, h in s.spec.workloads.items()} for s in chosen
        },
        "components_capacity": read_components_capacity(),
        "services_fairness": read_services_fairness(chosen),
    }
    (run_dir / EXPERIMENT).write_text(json.dumps(experiment, indent=2, default=str))
    update_manifest(
        run_dir,
        phases={
            r.phase_id: {
                "label": r.phase.label,
                "status": r.status,
                "error": r.error,
                "component_telemetry": (r.driver or {}).get("component_telemetry"),
            }
            for r in results
        },
        drivers={
            s: next((r.driver for r in results if r.phase.stack == s and r.status == "ok"), {})
            for s in stacks
        },
        ledger_rows=ledger_rows,
    )
    for cap in record_sweep_capacities(run_dir):
        console.print(
            f"capacity {cap.stack}/{cap.workload}: {cap.sustained_rate} ev/s sustained, knee at {cap.knee_rate}"
        )

    report: Path | None = None
    report_error: str | None = None
    if analyze:
        console.rule("[bold]analysis and report[/]")
        try:
            ingest_run(run_dir, console=console)  # the merged span files → the span table
            links = TraceLinks(load_config().trace_url_templates())
            report = write_experiment_report(run_dir, console=console, trace_links=links)
        except Exception as exc:  # the run directory keeps everything; `hopscope analyze` can redo it
            report_error = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]report failed:[/] {report_error}")
            (run_dir / REPORT_ERROR).write_text(traceback.format_exc())
    seconds = time.monotonic() - t0
    update_manifest(run_dir, elapsed_s=round(seconds, 1))
    return ExperimentResult(run_dir, run_id, results, seconds, crosschecks, report, report_error, up_error)


def _token() -> str:
    return secrets.token_hex(3)


def headline_rows(result: ExperimentResult) -> list[dict[str, Any]]:
    """Per workload × stack: what the report's headline shows — the analysis' figure (named in
    `figure`) at p50 and p99 with its 95 % interval and the verdict at each, read from the run's
    verdict tables — and the phases ok / failed. Without those tables (no report) the figure is
    the ledger e2e median over traced repeats, without interval or verdict, and says so."""
    est, ver = _verdict_tables(result.run_dir)
    rows = []
    workloads = list(dict.fromkeys(r.phase.workload for r in result.phases))
    stacks = list(dict.fromkeys(r.phase.stack for r in result.phases))
    for w in workloads:
        for s in stacks:
            traced = [
                r for r in result.phases if r.phase.workload == w and r.phase.stack == s and r.phase.tracing
            ]
            if not traced:
                continue
            ok = [r for r in traced if r.status == "ok"]
            row: dict[str, Any] = {
                "workload": w,
                "stack": s,
                "ok": len(ok),
                "failed": len(traced) - len(ok),
                "error": next((r.error for r in traced if r.error), None),
            }
            if est is not None:
                row.update(_analysed_figures(est, ver, w, s))
            else:
                figs = [r.figures.get("e2e_ms") or {} for r in ok]
                for q in ("p50", "p99"):
                    vals = [f[q] for f in figs if f.get(q) is not None]
                    row[f"{q}_ms"] = statistics.median(vals) if vals else None
                    row[f"{q}_ci"] = None
                    row[f"{q}_verdict"] = ""
                row["figure"] = "ledger e2e, median over repeats (no analysis: no interval, no verdict)"
            rows.append(row)
    return rows


def _verdict_tables(run_dir: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The analysis' estimates and verdicts of the run (None, None when it wrote none)."""
    paths = [run_dir / table_file(n) for n in ("estimates", "verdicts")]
    if not all(p.exists() for p in paths):
        return None, None
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1])


def _analysed_figures(
    est: pd.DataFrame, ver: pd.DataFrame | None, workload: str, stack: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"figure": str(est["figure"].iloc[0]) if len(est) else "", "n": None}
    mine = est[(est["workload"] == workload) & (est["stack"] == stack)]
    if "basis" in mine:
        mine = mine[mine["basis"] != "sustained rate"]
    for q in ("p50", "p99"):
        e = mine[mine["quantile_name"] == q]
        shown = len(e) and bool(e["shown"].iloc[0])
        out[f"{q}_ms"] = float(e["value"].iloc[0]) if shown else None
        out[f"{q}_ci"] = (float(e["ci_low"].iloc[0]), float(e["ci_high"].iloc[0])) if shown else None
        if len(e):
            out["n"] = int(e["n"].iloc[0])
            if "rate" in e and e["rate"].iloc[0] == e["rate"].iloc[0]:
                out["rate"] = float(e["rate"].iloc[0])
        if ver is None or ver.empty:
            out[f"{q}_verdict"] = ""
            continue
        v = ver[
            (ver["workload"] == workload)
            & (ver["quantile_name"] == q)
            & ((ver["stack_a"] == stack) | (ver["stack_b"] == stack))
        ]
        if len(v) <= 1:
            out[f"{q}_verdict"] = str(v["verdict"].iloc[0]) if len(v) else ""
        else:
            # three stacks or more: each of this stack's pairs, named by the other stack
            out[f"{q}_verdict"] = "; ".join(
                f"vs {r.stack_b if r.stack_a == stack else r.stack_a}: {r.verdict}" for r in v.itertuples()
            )
    return out
