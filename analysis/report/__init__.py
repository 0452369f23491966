"""The HTML and Markdown report of an analysed run.

    from hopscope.analysis import load
    from hopscope.analysis.report import ReportContext, write_report
    run = load(run_dir)
    write_report(ReportContext.from_run(run), run_dir)

Sections are functions in `sections.REPORT_SECTIONS` (top level) and
`sections.WORKLOAD_PARTS` (inside each workload); a new section is one more function.
"""

from __future__ import annotations

from .context import ReportContext, RunLike
from .headline import Headline, headline
from .render import ReportFiles, render_html, render_markdown, write_report
from .sections import REPORT_SECTIONS, WORKLOAD_PARTS, Section, build_sections

__all__ = [
    "REPORT_SECTIONS",
    "WORKLOAD_PARTS",
    "Headline",
    "ReportContext",
    "ReportFiles",
    "RunLike",
    "Section",
    "build_sections",
    "headline",
    "render_html",
    "render_markdown",
    "write_report",
]
