"""Stacks: one folder each, declared by its `stack.yaml`, found by scanning (never listed).

A stack folder holds its declaration (`stack.yaml`: name, driver, the services it needs, its
fairness controls and how to read the services' settings back, its hops per workload, its
cross-checks and what each is compared with, the report's wording for it) and its code: the driver and one module per workload. Folders are found under
`pipelines/*/stack.yaml` and in the folders named by `HOPSCOPE_STACK_PATH` (os.pathsep-separated;
each either a stack folder or a folder of stack folders), so a stack outside this repository
needs no edit here.

`module:attr` references in a declaration are relative to the stack folder: `driver:KafkaDriver`
is `pipelines/kafka/driver.py`'s `KafkaDriver`. A folder inside `pipelines/` is imported as
`hopscope.pipelines.<folder>`, any other folder as a package of its own (`hopscope_stack_<name>`).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hopscope.core.attributes import LOADGEN_SPAN_NAME, WAIT_PREFIX

from .workload import POINT_READ, Workload

PIPELINES_DIR = Path(__file__).resolve().parent
STACK_FILE = "stack.yaml"
#: Extra stack folders (os.pathsep-separated): a stack folder, or a folder of stack folders.
STACK_PATH_ENV = "HOPSCOPE_STACK_PATH"
#: Where out-of-tree stacks are imported as packages.
_EXTERNAL_PACKAGE = "hopscope_stack_"


class StackError(ValueError):
    """A stack declaration that cannot be used; the message names the file and the field."""


class UnknownStackError(StackError):
    """No stack of that name was discovered (and no driver is registered under it)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HopSpec(_Strict):
    name: str = Field(min_length=1)
    derived: bool = False
    #: For derived hops: the embedded timestamp the span is built from.
    source: str | None = None

    @model_validator(mode="after")
    def _derived_needs_source(self) -> HopSpec:
        if self.derived and not self.source:
            raise ValueError(f"derived hop {self.name!r} must name its timestamp 'source'")
        if self.name.startswith(WAIT_PREFIX) and self.derived:
            raise ValueError(f"wait hop {self.name!r} is a gap between spans; it cannot be derived")
        return self

    @property
    def is_wait(self) -> bool:
        return self.name.startswith(WAIT_PREFIX)


def _check_hop_list(hops: list[HopSpec], what: str) -> list[HopSpec]:
    if not hops:
        raise ValueError(f"{what} is empty")
    names = [h.name for h in hops]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} lists hop(s) more than once: {dupes}")
    for i, hop in enumerate(hops):
        if hop.is_wait:
            target = hop.name[len(WAIT_PREFIX) :]
            following = names[i + 1] if i + 1 < len(names) else None
            if following != target:
                raise ValueError(
                    f"{what}: {hop.name!r} must be followed by hop {target!r} (it is the wait before it), "
                    f"found {following!r}"
                )
    return hops


class DurabilitySpec(_Strict):
    """What is durable, and in how many copies, before the writer's answer and before a
    subscriber hears of the event, on this stack (the report's durability table; the settings
    named in `by` are read back in the fairness table)."""

    #: what is written, in words
    stored: str = Field(min_length=1)
    #: durable copies confirmed before the writer's acknowledgement
    copies_before_ack: int = Field(ge=0)
    #: durable copies that exist before a subscriber is notified (the latency's end point)
    copies_before_notify: int = Field(ge=0)
    #: the settings that make it so
    by: str = Field(min_length=1)


class WorkloadHops(_Strict):
    """A stack's ordered expected hops for one workload (and for its point reads)."""

    hops: list[HopSpec]
    point_read_hops: list[HopSpec] = Field(default_factory=list)
    durability: DurabilitySpec | None = None
    #: the components this pipeline passes through whose standalone capacity the host measured
    #: (names of `benchmarks/component_capacity.py`): the report compares the pipeline's
    #: capacity with its slowest part's
    capacity_parts: list[str] = Field(default_factory=list)

    @field_validator("hops")
    @classmethod
    def _hops_ok(cls, hops: list[HopSpec]) -> list[HopSpec]:
        return _check_hop_list(hops, "hops")

    @field_validator("point_read_hops")
    @classmethod
    def _pr_hops_ok(cls, hops: list[HopSpec]) -> list[HopSpec]:
        return _check_hop_list(hops, "point_read_hops") if hops else hops


class FairnessControl(_Strict):
    """One control of the study: what it must be and where a driver manifest holds its value
    (dotted path; `topics[]` = every topic). A setting a profile tunes takes its expected value
    from the stack's driver options instead (`expected_from`, a dotted path into them)."""

    control: str = Field(min_length=1)
    #: None: the value is stated, not prescribed
    expected: str | None = None
    #: where in the stack's driver options (`options`, defaults filled) the expected value is
    expected_from: str | None = None
    read_back: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_expectation(self) -> FairnessControl:
        if self.expected is not None and self.expected_from is not None:
            raise ValueError(f"control {self.control!r}: give 'expected' or 'expected_from', not both")
        return self


def _is_ref(value: str) -> bool:
    module, sep, attr = value.partition(":")
    return bool(sep and module and attr and all(p.isidentifier() for p in [*module.split("."), attr]))


class TracedCandidate(_Strict):
    """One place the traced counterpart of a cross-check may be: a workload of the stack and a
    hop of it."""

    workload: str = Field(min_length=1)
    hop: str = Field(min_length=1)


class TracedFigure(_Strict):
    """What a cross-check's figure is compared with, in the stack's own traces.

    `measure: hop` = that hop's own latency (hop statistics); `measure: partial_sum` = the
    partial sum of the path's hops up to and including that hop (tail growth), i.e. from the
    intended send to the end of the hop (for a `wait:X` hop: to the start of X). The candidates
    are tried in order; the first with data is shown. `what` describes it in the report
    (`{hop}` = the hop's name without the `wait:` prefix)."""

    measure: Literal["hop", "partial_sum"]
    candidates: tuple[TracedCandidate, ...] = Field(min_length=1)
    what: str = ""


class CrossCheckSpec(_Strict):
    """One cross-check of a stack: which check (a name the experiment knows, or the stack's own
    `module:function`), its label in the report and the traced figure it is compared with."""

    check: str = Field(min_length=1)
    #: the report's name for the check (default: the check's result name)
    label: str = ""
    #: None: the tool's figure is shown alone
    traced: TracedFigure | None = None

    @property
    def result_name(self) -> str:
        """The key of the check's result in the run (`module:function` → `function`)."""
        return self.check.rpartition(":")[2]

    def report_info(self) -> dict[str, Any]:
        """What the report needs to show the check's result (stored beside it in the run)."""
        return {
            "label": self.label or self.result_name,
            "traced": self.traced.model_dump(mode="json") if self.traced else None,
        }


class StackLabels(_Strict):
    """How the report names what the stack does (free text)."""

    #: what a point read is on this stack (the point-read table's caption)
    point_read: str = ""
    #: where the services' settings of the fairness table come from on this stack
    read_back: str = ""


class ControlOf(_Strict):
    """The stack is another stack with one thing changed (a control, e.g. its glue in another
    language): the report says whether each verdict against a third stack depends on it."""

    #: the stack it is a variant of
    of: str
    #: what differs, as the report says it ("its glue services in Node.js instead of Python")
    varies: str


class StackSpec(_Strict):
    """The contents of a `stack.yaml`."""

    name: str
    description: str = ""
    #: position in the experiment's interleaved order and in its report (then by name)
    order: int = 100
    #: `module:Class` of the driver, the module relative to the stack folder
    driver: str
    #: services from deploy's registry the stack needs (`hopscope up` starts them for a run)
    services: tuple[str, ...] = ()
    fairness: tuple[FairnessControl, ...] = ()
    #: `module:function(deploy_context) -> dict`: settings read from the running services
    services_readback: str | None = None
    #: `module:Model`: the pydantic model of the driver options a profile may set for this stack
    #: (`stack_options.<stack>`); without it a profile may set none
    options: str | None = None
    #: independent cross-checks: each `{check, label, traced}`, or just the check (a name the
    #: experiment knows, or `module:function`)
    crosschecks: tuple[CrossCheckSpec, ...] = ()
    #: the report's wording for the stack
    labels: StackLabels = StackLabels()
    #: a control: this stack is `control.of` with one thing changed
    control: ControlOf | None = None
    #: workload name → its hops on this stack
    workloads: dict[str, WorkloadHops]

    @field_validator("crosschecks", mode="before")
    @classmethod
    def _bare_check_names(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"check": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("name")
    @classmethod
    def _name_ok(cls, name: str) -> str:
        # words may be joined by '-' (`kafka-node`): a label people type, never an import name
        if not all(word.isidentifier() for word in name.split("-")):
            raise ValueError(f"stack name {name!r} must be an identifier, or identifiers joined by '-'")
        return name

    @field_validator("driver", "services_readback", "options")
    @classmethod
    def _ref_ok(cls, value: str | None) -> str | None:
        if value is not None and not _is_ref(value):
            raise ValueError(f"{value!r} is not 'module:attribute' (module relative to the stack folder)")
        return value

    @field_validator("workloads")
    @classmethod
    def _some_workload(cls, workloads: dict[str, WorkloadHops]) -> dict[str, WorkloadHops]:
        if not workloads:
            raise ValueError("no workload declared")
        return workloads

    @model_validator(mode="after")
    def _traced_hops_declared(self) -> StackSpec:
        """A cross-check is compared with hops this stack declares."""
        results = [c.result_name for c in self.crosschecks]
        dupes = sorted({r for r in results if results.count(r) > 1})
        if dupes:
            raise ValueError(f"crosschecks: more than one check named {dupes}")
        for i, c in enumerate(self.crosschecks):
            for j, cand in enumerate(c.traced.candidates if c.traced else ()):
                where = f"crosschecks.{i}.traced.candidates.{j}"
                spec = self.workloads.get(cand.workload)
                if spec is None:
                    raise ValueError(
                        f"{where}: workload {cand.workload!r} is not among the declared workloads "
                        f"{sorted(self.workloads)}"
                    )
                names = [h.name for h in (*spec.hops, *spec.point_read_hops)]
                if cand.hop not in names:
                    raise ValueError(
                        f"{where}: hop {cand.hop!r} is not a hop of workload {cand.workload!r} {names}"
                    )
        return self


class Stack:
    """A discovered stack: its declaration, its folder, and what the declaration points at."""

    def __init__(self, spec: StackSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = folder

    def __repr__(self) -> str:
        return f"Stack({self.name!r}, {self.folder})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def file(self) -> Path:
        return self.folder / STACK_FILE

    @property
    def package(self) -> str:
        """The import name of the stack folder."""
        if self.folder.parent == PIPELINES_DIR:
            return f"{__package__}.{self.folder.name}"
        return f"{_EXTERNAL_PACKAGE}{self.name.replace('-', '_')}"

    def resolve(self, ref: str, what: str) -> Any:
        """`module:attr` (module relative to the stack folder) → the object."""
        module_name, _, attr = ref.partition(":")
        full = f"{self.package}.{module_name}"
        _ensure_package(self.package, self.folder)
        try:
            module = importlib.import_module(full)
        except ModuleNotFoundError as exc:
            raise UnknownStackError(
                f"the {what} for stack {self.name!r} is not available: module {full} cannot be imported "
                f"({exc}; declared in {self.file})"
            ) from exc
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise StackError(f"{self.file}: {what} {ref!r}: module {full} has no {attr!r}") from exc

    def driver_factory(self) -> Callable[..., Any]:
        return self.resolve(self.spec.driver, "driver")

    def driver_options(self, raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A profile's options for this stack's driver, validated by the declared `options`
        model, with its defaults filled in (JSON types); {} for a stack that declares none.
        StackError names the stack and the field (e.g. a tuning that lowers durability)."""
        if self.spec.options is None:
            if raw:
                raise StackError(
                    f"stack {self.name!r} takes no options from a profile (no 'options' in {self.file}); "
                    f"got {sorted(raw)}"
                )
            return {}
        model = self.resolve(self.spec.options, "options model")
        try:
            return dict(model.model_validate(dict(raw or {})).model_dump(mode="json"))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<options>'}: {e['msg']}" for e in exc.errors()
            )
            raise StackError(f"options for stack {self.name!r}: {problems}") from exc

    def fairness_rows(
        self, options: Mapping[str, Any] | None = None
    ) -> list[tuple[FairnessControl, str | None]]:
        """Each fairness control with its expected value: the declared one, or — for a tuned
        setting — the value in the driver options (`options`, validated; None = the defaults).
        An option left unset (None) is expected as None: the client's own default."""
        resolved = self.driver_options(options)  # idempotent on options already validated
        rows = []
        for control in self.spec.fairness:
            if control.expected_from is None:
                rows.append((control, control.expected))
                continue
            value = _dotted(resolved, control.expected_from, f"{self.file}: control {control.control!r}")
            rows.append((control, None if value is None else _as_text(value)))
        return rows

    def hops(self, workload: str) -> WorkloadHops:
        try:
            return self.spec.workloads[workload]
        except KeyError:
            raise StackError(
                f"stack {self.name!r} declares no hops for workload {workload!r} "
                f"(declared: {sorted(self.spec.workloads)}; {self.file})"
            ) from None

    def check_workload(self, workload: Workload) -> WorkloadHops:
        """The workload's hops, after checking the stack can run it as configured."""
        hops = self.hops(workload.name)
        if workload.point_read_rate is not None and not hops.point_read_hops:
            raise StackError(
                f"workload {workload.name!r} sets point_read_rate but stack {self.name!r} declares no "
                f"point_read_hops for it ({self.file})"
            )
        return hops

    def expected_hops(self, workload: Workload) -> dict[str, list[str]]:
        """`{workload: [hop, ...]}` (plus point reads) for the manifest's `expected_hops[stack]`."""
        spec = self.hops(workload.name)
        out = {workload.name: [h.name for h in spec.hops]}
        if workload.point_read_rate is not None and spec.point_read_hops:
            out[POINT_READ] = [h.name for h in spec.point_read_hops]
        return out

    def report_info(self) -> dict[str, Any]:
        """How the report names the stack and what each workload keeps durable (stored in the
        run, so the analysis needs no stack)."""
        return {
            "description": self.spec.description,
            "point_read_label": self.spec.labels.point_read,
            "read_back_label": self.spec.labels.read_back,
            "control": self.spec.control.model_dump() if self.spec.control else None,
            "durability": {
                name: hops.durability.model_dump(mode="json")
                for name, hops in self.spec.workloads.items()
                if hops.durability is not None
            },
        }

    def root_hops(self, workload: str) -> tuple[str, str]:
        """(the event's root hop, a point read's root hop): the stack's first hops."""
        spec = self.hops(workload)
        root = spec.hops[0].name
        return root, spec.point_read_hops[0].name if spec.point_read_hops else root


def _dotted(doc: Mapping[str, Any], path: str, where: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise StackError(f"{where}: expected_from {path!r} is not in the stack's driver options")
        value = value[part]
    return value


def _as_text(value: Any) -> str:
    """An option as the fairness table compares it with read-back values (true, 1, lz4)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _ensure_package(package: str, folder: Path) -> None:
    """Make an out-of-tree stack folder importable as `package` (no __init__.py needed)."""
    if package in sys.modules or not package.startswith(_EXTERNAL_PACKAGE):
        return
    module = types.ModuleType(package)
    module.__path__ = [str(folder)]
    sys.modules[package] = module


# --- discovery ---------------------------------------------------------------------------------


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid stack declaration ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<file>"
        lines.append(f"  - {loc}: {err['msg']}")
    return "\n".join(lines)


def read_stack(folder: Path) -> Stack:
    """Read and validate `folder/stack.yaml`; StackError names the file and the field."""
    path = folder / STACK_FILE
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise StackError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise StackError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise StackError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        spec = StackSpec.model_validate(raw)
    except ValidationError as exc:
        raise StackError(_format_error(path, exc)) from exc
    return Stack(spec, folder.resolve())


def stack_folders(environ: dict[str, str] | None = None) -> list[Path]:
    """Every folder holding a `stack.yaml`: `pipelines/*/` then `HOPSCOPE_STACK_PATH`'s entries."""
    env = os.environ if environ is None else environ
    found = sorted(p.parent for p in PIPELINES_DIR.glob(f"*/{STACK_FILE}"))
    for entry in (env.get(STACK_PATH_ENV) or "").split(os.pathsep):
        if not entry.strip():
            continue
        root = Path(entry).expanduser()
        if (root / STACK_FILE).is_file():
            found.append(root)
        elif root.is_dir():
            found += sorted(p.parent for p in root.glob(f"*/{STACK_FILE}"))
        else:
            raise StackError(f"{STACK_PATH_ENV} names {root}, which is neither a stack folder nor a folder")
    return found


@lru_cache(maxsize=8)
def _discover(folders: tuple[Path, ...]) -> dict[str, Stack]:
    stacks: dict[str, Stack] = {}
    for folder in folders:
        stack = read_stack(folder)
        if stack.name in stacks and stacks[stack.name].folder != stack.folder:
            raise StackError(
                f"stack {stack.name!r} is declared twice: {stacks[stack.name].file} and {stack.file}"
            )
        stacks[stack.name] = stack
    for stack in stacks.values():
        control = stack.spec.control
        if control is not None and (control.of == stack.name or control.of not in stacks):
            known = ", ".join(n for n in stacks if n != stack.name)
            raise StackError(f"{stack.file}: control.of {control.of!r} is not another stack (known: {known})")
    return dict(sorted(stacks.items(), key=lambda kv: (kv[1].spec.order, kv[0])))


def discover_stacks() -> dict[str, Stack]:
    """Name → stack, in the declared order (then by name). Read once per set of folders."""
    return _discover(tuple(f.resolve() for f in stack_folders()))


def stack_names() -> list[str]:
    return list(discover_stacks())


def stack_names_for_help(names: Callable[[], list[str]] = stack_names) -> str:
    """The stacks as a command's help text lists them; a broken declaration must not break
    `--help` (the command itself names the problem)."""
    try:
        return ", ".join(names())
    except StackError:
        return "see pipelines/*/stack.yaml"


def load_stack(name: str) -> Stack:
    stacks = discover_stacks()
    if name not in stacks:
        known = ", ".join(stacks) or "(none)"
        raise UnknownStackError(
            f"unknown stack {name!r}; discovered stacks: {known} "
            f"(in {PIPELINES_DIR}/*/{STACK_FILE} and ${STACK_PATH_ENV})"
        )
    return stacks[name]


def find_stack(name: str) -> Stack | None:
    return discover_stacks().get(name)


def expected_hops(stack: str, workload: Workload) -> dict[str, list[str]]:
    """The manifest's `expected_hops[stack]`: from the declaration, or (a simulation with no
    declaration) just the load generator's root span."""
    found = find_stack(stack)
    if found is None:
        return {workload.name: [LOADGEN_SPAN_NAME]}
    return found.expected_hops(workload)


def root_hops(stack: str, workload: str) -> tuple[str, str]:
    """(root hop, point-read root hop) the load generator's root spans stand for."""
    found = find_stack(stack)
    if found is None or workload not in found.spec.workloads:
        return LOADGEN_SPAN_NAME, LOADGEN_SPAN_NAME
    return found.root_hops(workload)
