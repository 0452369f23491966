"""Where a trace id opens in a trace UI: URL templates with `{trace_id}` (the local Jaeger UI's
`http://127.0.0.1:<query port>/trace/{trace_id}`, a Tempo / Grafana Explore URL when configured).
The analysis knows no service: the commands pass the templates from the deploy configuration."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

#: what a template must hold where the trace id goes
PLACEHOLDER = "{trace_id}"


def template_problem(template: str) -> str | None:
    """Why the template cannot make a link (None: it can)."""
    if PLACEHOLDER not in template:
        return f"no {PLACEHOLDER} where the trace id goes"
    if not template.startswith(("http://", "https://")):
        return "not an http:// or https:// URL"
    return None


@dataclass(frozen=True)
class TraceLinks:
    """(UI name, URL template) pairs, in the order the report shows them; none: ids without links."""

    templates: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, template in self.templates:
            if problem := template_problem(template):
                raise ValueError(f"{name} URL template {template!r}: {problem}")

    def urls(self, trace_id: str) -> list[tuple[str, str]]:
        """(UI name, URL) per template; the id is URL-quoted (a foreign id may hold anything)."""
        return [(name, t.replace(PLACEHOLDER, quote(trace_id, safe=""))) for name, t in self.templates]
