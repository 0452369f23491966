"""The HTML and Markdown report of an analysed run.

    from hopscope.analysis import load
    from hopscope.analysis.report import ReportContext, write_report
    run = load(run_dir)
    write_report(ReportContext.from_run(run), run_dir)

Sections are functions in `outline.REPORT_SECTIONS` (top level) and
`outline.WORKLOAD_PARTS` (inside each workload); a new section is one more function.
"""

from __future__ import annotations

from .context import ReportContext, RunLike
from .headline import Headline, headline
from .outline import REPORT_SECTIONS, WORKLOAD_PARTS, build_sections
from .render import ReportFiles, render_html, render_markdown, write_report
from .section import Section
from .trace_links import TraceLinks

__all__ = [
    "REPORT_SECTIONS",
    "WORKLOAD_PARTS",
    "Headline",
    "ReportContext",
    "ReportFiles",
    "RunLike",
    "Section",
    "TraceLinks",
    "build_sections",
    "headline",
    "render_html",
    "render_markdown",
    "write_report",
]
