"""What the report reads from an analysed run, fetched once and shared by every section."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import networkx as nx
import numpy as np
import pandas as pd

from hopscope.core.rundir import RunDirError

from ..foreign import ForeignInfo
from ..verdicts import analyse, repeat_disagreements
from .trace_links import TraceLinks


class RunLike(Protocol):
    """The part of `hopscope.analysis.load(...)`'s result the report uses."""

    def pairs(self) -> list[tuple[str, str]]: ...
    def expected_hops(self, stack: str, workload: str) -> list[str]: ...
    def hop_stats(self) -> pd.DataFrame: ...
    def e2e(self) -> pd.DataFrame: ...
    def tail_growth(self) -> pd.DataFrame: ...
    def graph(self, stack: str, workload: str) -> nx.DiGraph: ...
    def quality(self) -> pd.DataFrame | dict: ...


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i is not None and i == i))


@dataclass
class ReportContext:
    """The run's tables plus the stack and workload lists every section iterates over.

    `stacks` and `workloads` include those the manifest expected but the data lacks,
    so a section can say "no data for stack X" instead of leaving it out.
    """

    run: RunLike
    hop_stats: pd.DataFrame
    e2e: pd.DataFrame
    tail_growth: pd.DataFrame
    quality: pd.DataFrame
    stacks: list[str]
    workloads: list[str]
    title: str = "hopscope report"
    meta: dict[str, Any] = field(default_factory=dict)
    #: `experiment.json` of a `hopscope run` (phases, fairness, cross-checks); empty otherwise
    experiment: dict[str, Any] = field(default_factory=dict)
    #: Jaeger-mode critical-path statistics per trace (`Run.jaeger_stats()`) of a run loaded in
    #: jaeger mode; None otherwise
    jaeger_stats: pd.DataFrame | None = None
    #: the verdicts' tables (`Run.estimates()`, `Run.verdicts()`, `Run.repeat_disagreements()`),
    #: the figure they use and the rate sweeps' rates (`Run.sweep_rates()`); for a run object
    #: without them, computed from the trace e2e as one repeat
    estimates: pd.DataFrame = field(default_factory=pd.DataFrame)
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    disagreements: pd.DataFrame = field(default_factory=pd.DataFrame)
    verdict_figure: str = "trace e2e"
    sweep_rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a run of foreign traces (`Run.foreign`): what the defaults and the mapping did; None for
    #: hopscope's own runs. The report then speaks of the label and entry operations, prints the
    #: mapping and leaves out what only hopscope's experiment has (verdicts between stacks, ledger)
    foreign: ForeignInfo | None = None
    #: where a trace id opens (Jaeger UI, Tempo); empty: the waterfalls show ids without links
    trace_links: TraceLinks = field(default_factory=TraceLinks)
    #: `Run.delivery_waterfalls()`, `Run.phases()`, `Run.latency_per_second()`; None for a run
    #: object without them (the sections say so)
    waterfalls: pd.DataFrame | None = None
    phases: pd.DataFrame | None = None
    per_second: pd.DataFrame | None = None
    #: `Run.service_map()`: the client → server edges the spans name; None without a span file
    service_map: pd.DataFrame | None = None
    _pairs: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _graphs: dict[tuple[str, str], nx.DiGraph | None] = field(default_factory=dict, repr=False)

    @classmethod
    def from_run(
        cls,
        run: RunLike,
        *,
        expected: dict[str, dict[str, list[str]]] | None = None,
        title: str = "hopscope report",
        meta: dict[str, Any] | None = None,
        trace_links: TraceLinks | None = None,
    ) -> ReportContext:
        """Fetch every table once. `expected` is the manifest's `expected_hops` map; by default
        it is taken from `run.manifest` when the run has one."""
        pairs = list(run.pairs())
        if expected is None:
            expected = (getattr(run, "manifest", None) or {}).get("expected_hops") or {}
        meta = dict(meta or {})
        ingest_report = getattr(run, "ingest_report", None)
        if ingest_report and "ingest_report" not in meta:
            meta["ingest_report"] = ingest_report
        e2e = run.e2e()
        if all(hasattr(run, m) for m in ("estimates", "verdicts", "repeat_disagreements", "sweep_rates")):
            estimates, verdicts = run.estimates(), run.verdicts()  # type: ignore[attr-defined]
            disagreements = run.repeat_disagreements()  # type: ignore[attr-defined]
            figure, sweep_rates = run.verdict_figure, run.sweep_rates()  # type: ignore[attr-defined]
        else:
            lat = pd.DataFrame(
                {"workload": e2e.get("workload", []), "stack": e2e.get("stack", []), "repeat": 0,
                 "latency_ms": np.asarray(e2e.get("e2e_ms", []), dtype=float)}
            )  # fmt: skip
            lat = lat[np.isfinite(lat["latency_ms"])]
            estimates, verdicts = analyse(lat)
            estimates["basis"] = "all"
            disagreements, figure, sweep_rates = repeat_disagreements(lat), "trace e2e", {}
        # stacks and workloads: expected, traced, and those with verdict figures (a ledger-only run)
        est_pairs = list(zip(estimates.get("stack", []), estimates.get("workload", []), strict=True))
        stacks = _unique([s for s in expected] + [s for s, _ in pairs] + [s for s, _ in est_pairs])
        workloads = _unique(
            [w for per in expected.values() for w in per] + [w for _, w in pairs] + [w for _, w in est_pairs]
        )
        return cls(
            run=run,
            hop_stats=run.hop_stats(),
            e2e=e2e,
            tail_growth=run.tail_growth(),
            quality=_quality_frame(run),
            stacks=stacks,
            workloads=workloads,
            title=title,
            meta=meta,
            jaeger_stats=run.jaeger_stats() if getattr(run, "mode", "event") == "jaeger" else None,  # type: ignore[attr-defined]
            estimates=estimates,
            verdicts=verdicts,
            disagreements=disagreements,
            verdict_figure=figure,
            sweep_rates=sweep_rates,
            foreign=getattr(run, "foreign", None),
            trace_links=trace_links or TraceLinks(),
            waterfalls=_optional(run, "delivery_waterfalls"),
            phases=_optional(run, "phases"),
            per_second=_optional(run, "latency_per_second"),
            service_map=_service_map(run),
            _pairs=set(pairs),
        )

    # -- per stack × workload views -------------------------------------------------

    def deliveries(self, stack: str, workload: str) -> pd.DataFrame:
        e = self.e2e
        if e.empty:
            return e
        return e[(e["stack"] == stack) & (e["workload"] == workload)]

    def hops(self, stack: str, workload: str) -> pd.DataFrame:
        """hop_stats rows of one pair, in path order."""
        h = self.hop_stats
        if h.empty:
            return h
        sel = h[(h["stack"] == stack) & (h["workload"] == workload)]
        return sel.sort_values(["order", "hop"], kind="stable")

    def growth(self, stack: str, workload: str) -> pd.DataFrame:
        g = self.tail_growth
        if g.empty:
            return g
        sel = g[(g["stack"] == stack) & (g["workload"] == workload)]
        return sel.sort_values(["order", "hop"], kind="stable")

    def stacks_with_data(self, workload: str) -> list[str]:
        return [s for s in self.stacks if len(self.deliveries(s, workload)) > 0]

    def stacks_without_data(self, workload: str) -> list[str]:
        return [s for s in self.stacks if len(self.deliveries(s, workload)) == 0]

    def graph(self, stack: str, workload: str) -> nx.DiGraph | None:
        """The pair's hop graph, or None when the run has no such pair."""
        key = (stack, workload)
        if key not in self._graphs:
            graph = None
            if key in self._pairs:
                try:
                    graph = self.run.graph(stack, workload)
                except KeyError:  # the core's answer for a pair without analysed deliveries
                    graph = None
            self._graphs[key] = graph
        return self._graphs[key]

    def stack_color(self, stack: str) -> str:
        return STACK_COLORS[self.stacks.index(stack) % len(STACK_COLORS)] if stack in self.stacks else "#777"


def _optional(run: RunLike, method: str) -> pd.DataFrame | None:
    """A table only the full `Run` has (None for a lighter run object)."""
    fn = getattr(run, method, None)
    return fn() if callable(fn) else None


def _service_map(run: RunLike) -> pd.DataFrame | None:
    """The run's service map, None when it has no span file to read it from."""
    try:
        return _optional(run, "service_map")
    except RunDirError:
        return None


def _quality_frame(run: RunLike) -> pd.DataFrame:
    """One row per stack × workload. The core's `quality()` is a nested dict (for
    quality.json) and `quality_frame()` its flat form; a DataFrame is taken as is."""
    q = run.quality()
    if isinstance(q, pd.DataFrame):
        return q
    flat = getattr(run, "quality_frame", None)
    if flat is None:
        raise TypeError(
            f"{type(run).__name__}.quality() returned {type(q).__name__} and there is no quality_frame()"
        )
    return flat()


# Colour-blind-safe (Okabe–Ito); a stack keeps its colour on every plot.
STACK_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
