"""The report's order: the top-level sections and each workload's parts, built in one place
from the run sections (sections.py) and the experiment sections (experiment_sections.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .capacity_section import capacity_section
from .context import ReportContext
from .delivery_sections import workload_deliveries, workload_latency_over_time
from .experiment_sections import (
    crosscheck_section,
    fairness_section,
    overhead_section,
    run_status_section,
    workload_point_reads,
    workload_repeats,
    workload_sweep,
)
from .foreign_method import foreign_method_section
from .method_section import method_section
from .resources_section import resources_section
from .section import Section, SectionFn, WorkloadPartFn, slug
from .sections import (
    headline_section,
    jaeger_section,
    quality_section,
    workload_breakdown,
    workload_cdf,
    workload_graphs,
    workload_growth,
    workload_hop_table,
    workload_service_map,
    workload_shares,
    workload_summary,
)

#: The parts of each workload's section, in order (the experiment's yield nothing for a run
#: without experiment.json). Append to extend.
WORKLOAD_PARTS: list[WorkloadPartFn] = [
    workload_summary,
    workload_repeats,
    workload_cdf,
    workload_latency_over_time,
    workload_breakdown,
    workload_growth,
    workload_shares,
    workload_graphs,
    workload_service_map,
    workload_hop_table,
    workload_deliveries,
    workload_sweep,
    workload_point_reads,
]


def workload_sections(ctx: ReportContext) -> Iterable[Section]:
    for workload in ctx.workloads:
        children = [s for part in WORKLOAD_PARTS if (s := part(ctx, workload)) is not None]
        kind = "Entry operation" if ctx.foreign is not None else "Workload"
        yield Section(slug("workload", workload), f"{kind}: {workload}", "", "", children)


#: The report's top-level sections, in order. Append to extend.
REPORT_SECTIONS: list[SectionFn] = [
    headline_section,
    foreign_method_section,
    run_status_section,
    fairness_section,
    workload_sections,
    capacity_section,
    overhead_section,
    resources_section,
    crosscheck_section,
    jaeger_section,
    quality_section,
    method_section,
]


def build_sections(
    ctx: ReportContext,
    section_fns: Iterable[SectionFn] | None = None,
    on_done: Callable[[str], None] | None = None,
) -> list[Section]:
    out: list[Section] = []
    for fn in section_fns if section_fns is not None else REPORT_SECTIONS:
        for s in fn(ctx):
            out.append(s)
            if on_done is not None:
                on_done(s.title)
    return out
