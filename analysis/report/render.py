"""Assemble sections into one self-contained report.html (plotly.js inlined once, no
network requests) and a report.md with the same tables."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2
from plotly.offline import get_plotlyjs

from hopscope.core.rundir import REPORT_HTML, REPORT_MD

from ..outputs import write_text_atomic
from .context import ReportContext
from .outline import build_sections
from .section import Section, SectionFn

#: `src=`/`href=` attributes that would make the browser fetch something from the network.
EXTERNAL_REF = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I
)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def _meta_items(ctx: ReportContext) -> list[tuple[str, str]]:
    items = [(k, str(v)) for k, v in ctx.meta.items() if k != "ingest_report" and v not in (None, "")]
    items.append(("stacks", ", ".join(ctx.stacks) or "none"))
    items.append(("workloads", ", ".join(ctx.workloads) or "none"))
    return items


#: the page template (templates/report.html.j2: the report file's name + .j2)
TEMPLATE_NAME = f"{REPORT_HTML}.j2"


def render_html(ctx: ReportContext, sections: list[Section]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(_template(TEMPLATE_NAME)).render(
        title=ctx.title,
        meta=_meta_items(ctx),
        css=_template("report.css"),
        plotlyjs=get_plotlyjs(),
        sections=sections,
    )
    if m := EXTERNAL_REF.search(page):
        raise ValueError(f"{REPORT_HTML} would load from the network: {m.group(0)!r}")
    return page


def render_markdown(ctx: ReportContext, sections: list[Section]) -> str:
    lines = [f"# {ctx.title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in _meta_items(ctx)]
    lines += ["", "## Contents", ""]
    for s in sections:
        lines.append(f"- [{s.title}](#{s.anchor})")
        lines += [f"  - [{c.title}](#{c.anchor})" for c in s.children]
    for s in sections:
        lines += ["", f'<a id="{s.anchor}"></a>', "", f"## {s.title}"]
        lines += ["", s.markdown.rstrip()] if s.markdown.strip() else []
        for c in s.children:
            lines += ["", f'<a id="{c.anchor}"></a>', "", f"### {c.title}"]
            lines += ["", c.markdown.rstrip()] if c.markdown.strip() else []
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    ctx: ReportContext,
    out_dir: Path,
    section_fns: Iterable[SectionFn] | None = None,
    on_done: Callable[[str], None] | None = None,
) -> ReportFiles:
    """Build every section once and write both files into `out_dir`."""
    sections = build_sections(ctx, section_fns, on_done)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out_dir / REPORT_HTML, out_dir / REPORT_MD)
    html_text, md_text = render_html(ctx, sections), render_markdown(ctx, sections)
    # each file whole or not at all (the markdown first: report.html is what a reader opens)
    write_text_atomic(files.markdown, md_text)
    write_text_atomic(files.html, html_text)
    return files
