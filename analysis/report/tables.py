"""DataFrame → HTML and Markdown tables, with one number format for the whole report."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

Formatter = Callable[[object], str]


def fmt_ms(value: object) -> str:
    """Milliseconds with about three significant digits (latencies span µs to seconds)."""
    if _missing(value):
        return "–"
    v = float(value)  # type: ignore[arg-type]
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_share(value: object) -> str:
    """A fraction shown as a percentage."""
    if _missing(value):
        return "–"
    return f"{no_negative_zero(100 * float(value), 1):.1f} %"  # type: ignore[arg-type]


def no_negative_zero(value: float, digits: int) -> float:
    """`value` rounded as it will be printed, a tiny negative one as 0 (never "-0.0 %")."""
    rounded = round(value, digits)
    return 0.0 if rounded == 0 else rounded


def fmt_signed(value: float, digits: int) -> str:
    """`value` with its sign ("+1.5", "-0.3"), never "-0.0"."""
    return f"{no_negative_zero(value, digits):+.{digits}f}"


def fmt_ratio(value: object) -> str:
    if _missing(value):
        return "–"
    return f"{float(value):.2f}×"  # type: ignore[arg-type]


def fmt_count(value: object) -> str:
    if _missing(value):
        return "–"
    try:
        return f"{int(value):,}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(value)


def fmt_text(value: object) -> str:
    if _missing(value):
        return "–"
    return str(value)


def _missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


@dataclass(frozen=True)
class Column:
    """One displayed column: source field, header and how its cells are written."""

    field: str
    header: str
    fmt: Formatter = fmt_text
    numeric: bool = False


def ms(field: str, header: str | None = None) -> Column:
    return Column(field, header or field.removesuffix("_ms") + " (ms)", fmt_ms, True)


def share(field: str, header: str) -> Column:
    return Column(field, header, fmt_share, True)


def count(field: str, header: str | None = None) -> Column:
    return Column(field, header or field.replace("_", " "), fmt_count, True)


def text(field: str, header: str | None = None) -> Column:
    return Column(field, header or field.replace("_", " "))


@dataclass(frozen=True)
class Table:
    """Rows already formatted as strings, plus which cells to highlight."""

    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    flagged: set[tuple[int, int]]
    caption: str = ""

    def to_html(self, css_class: str = "data") -> str:
        out = [f'<table class="{css_class}">']
        if self.caption:
            out.append(f"<caption>{html.escape(self.caption)}</caption>")
        out.append("<thead><tr>")
        out.extend(f"<th>{html.escape(h)}</th>" for h in self.headers)
        out.append("</tr></thead><tbody>")
        for r, row in enumerate(self.rows):
            cells = []
            for c, cell in enumerate(row):
                classes = []
                if self.numeric[c]:
                    classes.append("num")
                if (r, c) in self.flagged:
                    classes.append("flag")
                cls = f' class="{" ".join(classes)}"' if classes else ""
                cells.append(f"<td{cls}>{html.escape(cell)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        return "".join(out)

    def to_markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")

        lines = []
        if self.caption:
            lines += [f"*{esc(self.caption)}*", ""]
        lines.append("| " + " | ".join(esc(h) for h in self.headers) + " |")
        lines.append("|" + "|".join("---:" if n else "---" for n in self.numeric) + "|")
        for r, row in enumerate(self.rows):
            cells = [
                f"**{esc(cell)}** ⚠" if (r, c) in self.flagged else esc(cell) for c, cell in enumerate(row)
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def make_table(
    frame: pd.DataFrame,
    columns: Sequence[Column],
    caption: str = "",
    flag: Callable[[pd.Series, str], bool] | None = None,
) -> Table:
    """Format `frame` into a Table; columns missing from the frame are left out, not invented."""
    present = [c for c in columns if c.field in frame.columns]
    rows: list[list[str]] = []
    flagged: set[tuple[int, int]] = set()
    for r, (_, rec) in enumerate(frame.iterrows()):
        rows.append([c.fmt(rec[c.field]) for c in present])
        if flag is not None:
            flagged.update((r, i) for i, c in enumerate(present) if flag(rec, c.field))
    return Table([c.header for c in present], rows, [c.numeric for c in present], flagged, caption)
