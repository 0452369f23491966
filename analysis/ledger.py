"""What the verdicts read from a run's ledger (`ledger.parquet`, the load generator's record of
every event): warm-up events, the *ledger e2e* of every delivery, and the steps of a rate sweep.

**Ledger e2e** = an expected subscriber's first receipt − the event's intended send time, on
the load generator's clock: complete whatever the tracing did (a lost span does not lose a
delivery) and measured the same way with tracing off. An event whose ledger row names no
expected subscriber counts each subscriber's first receipt. Warm-up events (`warmup`) are left
out. `repeat` (and `phase_id`) come from the run's merged ledger; a ledger without them (a
`bench` run, a run made before they were written) is one repeat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .sweep import knee_index, sustained_rate

NS_PER_MS = 1e6
DELIVERY_COLUMNS = ["stack", "workload", "event_id", "subscriber", "repeat", "target_rate", "latency_ms"]


def _flag(ledger: pd.DataFrame, column: str) -> np.ndarray:
    if column not in ledger:
        return np.zeros(len(ledger), bool)
    return ledger[column].fillna(False).astype(bool).to_numpy()


def warmup_events(ledger: pd.DataFrame | None) -> pd.DataFrame:
    """The warm-up rows (stack, workload, event_id) of a ledger (empty without a ledger)."""
    if ledger is None or not len(ledger):
        return pd.DataFrame(columns=["stack", "workload", "event_id"])
    return ledger.loc[_flag(ledger, "warmup"), ["stack", "workload", "event_id"]]


def measured(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger without its warm-up rows, with `repeat` (0 when the ledger has none)."""
    led = ledger.loc[~_flag(ledger, "warmup")]
    if "repeat" not in led:
        led = led.assign(repeat=0)
    if "target_rate" not in led:
        led = led.assign(target_rate=np.nan)
    return led


def deliveries(ledger: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (measured event, expected subscriber) received: its ledger e2e (ms)."""
    if ledger is None or not len(ledger) or "receipts" not in ledger:
        return pd.DataFrame(columns=DELIVERY_COLUMNS)
    led = measured(ledger)
    has = led["receipts"].map(lambda r: r is not None and len(r) > 0).to_numpy(bool)
    led = led.loc[has]
    if not len(led):
        return pd.DataFrame(columns=DELIVERY_COLUMNS)
    expected = (
        led["expected_subscribers"]
        if "expected_subscribers" in led
        else pd.Series([None] * len(led), led.index)
    )
    ex = led[["stack", "workload", "event_id", "repeat", "target_rate", "intended_ns", "receipts"]].assign(
        _expected=expected
    )
    ex = ex.explode("receipts")
    subs = np.array([r["subscriber"] or "" for r in ex["receipts"]], dtype=object)
    at = np.array([r["received_ns"] for r in ex["receipts"]], dtype=np.int64)
    wanted = np.array(
        [e is None or len(e) == 0 or s in set(e) for s, e in zip(subs, ex["_expected"], strict=True)], bool
    )
    df = pd.DataFrame(
        {
            "stack": ex["stack"].to_numpy(),
            "workload": ex["workload"].to_numpy(),
            "event_id": ex["event_id"].to_numpy(),
            "subscriber": subs,
            "repeat": ex["repeat"].to_numpy(),
            "target_rate": ex["target_rate"].to_numpy(dtype=float),
            "latency_ms": (at - ex["intended_ns"].to_numpy(np.int64)) / NS_PER_MS,
        }
    )[wanted]
    # the first receipt of each expected subscriber
    df = df.sort_values("latency_ms", kind="stable").drop_duplicates(
        ["stack", "workload", "event_id", "subscriber"]
    )
    return df.sort_index(kind="stable")[DELIVERY_COLUMNS]


SWEEP_COLUMNS = [
    "workload", "stack", "target_rate", "repeats", "events", "delivered", "achieved_rate", "p50_ms",
    "p99_ms", "p999_ms", "knee", "sustained",
]  # fmt: skip


def sweep_steps(ledger: pd.DataFrame | None, delivered: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per workload whose measured events were offered at more than one rate (a rate sweep) and
    per stack: each offered rate's figures (median over repeats, as the sweep section shows
    them), `knee` on the first step past the knee (`sweep.knee_index`), `sustained` on the
    highest rate below it."""
    if ledger is None or not len(ledger) or "target_rate" not in ledger:
        return pd.DataFrame(columns=SWEEP_COLUMNS)
    if delivered is None:
        delivered = deliveries(ledger)
    led = measured(ledger)
    rows = []
    for (workload, stack), g in led.groupby(["workload", "stack"], sort=False):
        rates = sorted(g["target_rate"].dropna().unique())
        if len(rates) < 2:
            continue
        d = delivered[(delivered["workload"] == workload) & (delivered["stack"] == stack)]
        steps = []
        for rate in rates:
            per_rep = []
            for rep, step in g[g["target_rate"] == rate].groupby("repeat", sort=True):
                lat = d[(d["target_rate"] == rate) & (d["repeat"] == rep)]["latency_ms"].to_numpy(float)
                sent = step["sent_ns"].dropna() if "sent_ns" in step else pd.Series(dtype=float)
                span_s = (sent.max() - sent.min()) / 1e9 if len(sent) > 1 else 0.0
                per_rep.append(
                    {
                        "events": len(step),
                        "delivered": int((step["outcome"] == "delivered").sum())
                        if "outcome" in step
                        else len(step),
                        "achieved_rate": (len(sent) - 1) / span_s if span_s > 0 else np.nan,
                        "p50_ms": float(np.quantile(lat, 0.5)) if len(lat) else np.nan,
                        "p99_ms": float(np.quantile(lat, 0.99)) if len(lat) else np.nan,
                        "p999_ms": float(np.quantile(lat, 0.999)) if len(lat) else np.nan,
                    }
                )
            pr = pd.DataFrame(per_rep)
            steps.append(
                {
                    "workload": workload, "stack": stack, "target_rate": float(rate), "repeats": len(pr),
                    "events": int(pr["events"].sum()), "delivered": int(pr["delivered"].sum()),
                    "achieved_rate": float(pr["achieved_rate"].median()),
                    "p50_ms": float(pr["p50_ms"].median()), "p99_ms": float(pr["p99_ms"].median()),
                    "p999_ms": float(pr["p999_ms"].median()),
                }
            )  # fmt: skip
        k = knee_index(steps)
        top = sustained_rate(steps)
        for i, s in enumerate(steps):
            rows.append({**s, "knee": i == k, "sustained": top is not None and s["target_rate"] == top})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)
