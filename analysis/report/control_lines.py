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
    same, differ = [], []
    for q in CONTROL_QUANTILES:
        vb, vv = pair_verdict(h, base, other, q), pair_verdict(h, variant, other, q)
        if vb is None or vv is None:
            continue
        text = f"{QUANTILE_LABELS[q]} — {base}: {vb.text()}; {variant}: {vv.text()}"
        (same if _outcome(vb, base) == _outcome(vv, variant) else differ).append(text)
    if not same and not differ:
        return None
    head = f"Control {variant} ({base} with {varies}), {h.workload}: the {base}-vs-{other} verdict"
    if differ:
        where = ", ".join(t.split(" — ")[0] for t in differ)
        return f"{head} depends on it at {where} ({' | '.join(differ + same)})."
    return f"{head} does not depend on it ({' | '.join(same)})."


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
