"""The headline's control sentences: a stack declared as another stack with one thing changed
(`control` in its stack.yaml, e.g. kafka-node = kafka with its glue in Node.js) answers one
question per workload and third stack — does the verdict against that stack depend on the thing
changed? It does where the two verdicts differ in outcome (which side is lower, or no clear
difference) at a quantile both show."""

from __future__ import annotations

from typing import Any

from .context import ReportContext
from .headline import QUANTILE_LABELS, Headline, Verdict

#: the quantiles the sentence compares (p99.9 rarely has enough samples for a verdict)
CONTROL_QUANTILES = ("p50", "p99")


def pair_verdict(h: Headline, a: str, b: str, quantile: str) -> Verdict | None:
    by_q = h.pairs.get((a, b)) or h.pairs.get((b, a)) or {}
    v = by_q.get(quantile)
    return v if v is not None and v.shown and v.ratio is not None else None


def _outcome(v: Verdict, own: str) -> str:
    """The verdict seen from `own`'s side: lower, higher, or no clear difference."""
    if not v.lower:
        return "no clear difference"
    return "lower" if v.lower == own else "higher"


def control_sentence(h: Headline, base: str, variant: str, other: str, varies: str) -> str | None:
    """One workload's sentence, or None when no quantile has both verdicts."""
    compared = []  # (quantile text, base's outcome, variant's outcome)
    for q in CONTROL_QUANTILES:
        vb, vv = pair_verdict(h, base, other, q), pair_verdict(h, variant, other, q)
        if vb is not None and vv is not None:
            text = f"{QUANTILE_LABELS[q]} — {base}: {vb.text()}; {variant}: {vv.text()}"
            compared.append((text, _outcome(vb, base), _outcome(vv, variant)))
    if not compared:
        return None
    head = f"Control {variant} ({base} with {varies}), {h.workload}: the {base}-vs-{other} verdict"
    differ = [c for c in compared if c[1] != c[2]]
    figures = " | ".join(c[0] for c in differ + [c for c in compared if c[1] == c[2]])
    if differ:
        where = ", ".join(c[0].split(" — ")[0] for c in differ)
        return f"{head} depends on it at {where} ({figures})."
    if all(c[1] == "no clear difference" for c in compared):
        # agreeing on "no clear difference" is no evidence either way: say that, not "does not depend"
        return f"{head} is no clear difference with either, so this run cannot tell whether it depends on it ({figures})."
    return f"{head} does not depend on it ({figures})."


def control_lines(ctx: ReportContext, lines: list[Headline]) -> list[str]:
    """Every control stack's sentences, per workload where it, its base and a third stack have data."""
    info: dict[str, Any] = (ctx.experiment or {}).get("stack_info") or {}
    out = []
    for variant, meta in info.items():
        control = (meta or {}).get("control") or {}
        base = control.get("of")
        if not base:
            continue
        for h in lines:
            names = [s.stack for s in h.stacks]
            if base not in names or variant not in names:
                continue
            for other in (n for n in names if n not in (base, variant)):
                sentence = control_sentence(h, base, variant, other, str(control.get("varies", "one change")))
                if sentence:
                    out.append(sentence)
    return out
