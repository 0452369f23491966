"""The method section of a foreign run: how hops, entry operations, the label and deliveries
were derived (the defaults of `foreign.py`, the mapping file's rules with how many spans each
matched). A run of hopscope's own yields nothing here: its hops are its instrumentation's."""

from __future__ import annotations

import html
from collections.abc import Iterable

from ..foreign import NORMALISATION_TEXT
from .context import ReportContext
from .section import Section

DEFAULTS = (
    "hop = service.name + operation; the operation follows the OTel semantic conventions where a span "
    'has them — messaging.destination.name: "<messaging.operation.type> <destination>"; http.route: '
    '"<method> <route>"; db.system.name / db.system: "<system> <db.operation.name> '
    '[<db.collection.name>]" or "<system> <span name>" — else the span name',
    "entry operation (the workload) = the root span's hop, or the first CONSUMER's destination when a "
    "trace starts with a message",
    "a consumer trace whose root links to a span of another trace is joined to it (the link is its "
    "parent in the event tree), so a delivery's critical path crosses the broker; each trace at the end "
    "of such a chain delivers once, at its last-ending span (fan-out to N consumers: N deliveries)",
    f"names normalised: {NORMALISATION_TEXT}",
)


def foreign_method_section(ctx: ReportContext) -> Iterable[Section]:
    info = ctx.foreign
    if info is None:
        return
    lines = [
        f"label (the stack column): {info.label}"
        + (f"; named by mapping rules: {', '.join(info.stacks)}" if info.stacks != [info.label] else ""),
        f"traces read: {info.traces:,}; joined to another trace through a span link: {info.joined:,}",
        f"entry operations: {', '.join(info.entry_operations) or '–'}",
        *DEFAULTS,
    ]
    rules: list[str] = []
    if info.mapping is None:
        lines.append("mapping: none (the defaults above)")
    else:
        lines.append(
            f"mapping: {info.mapping.source or 'given in code'} — the first matching rule sets a span's hop; "
            "a rule's workload or stack names every trace it matches a span of"
        )
        rules = [
            f"rule {i + 1}: {rule.describe()} — {n:,} span(s)" + (" — MATCHED NOTHING" if n == 0 else "")
            for i, (rule, n) in enumerate(zip(info.mapping.rules, info.rule_spans, strict=True))
        ]
    body = "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in lines) + "</ul>"
    md = "\n".join(f"- {t}" for t in lines)
    if rules:
        body += (
            "<ol>"
            + "".join(
                f'<li class="{"flag" if "MATCHED NOTHING" in r else ""}">{html.escape(r)}</li>' for r in rules
            )
            + "</ol>"
        )
        md += "\n\nMapping rules:\n\n" + "\n".join(f"{i + 1}. {r}" for i, r in enumerate(rules))
    yield Section("method-foreign", "Method: foreign traces", body, md)
