"""Latency over the run's time: the phases each stack × workload ran in, and per second of each
phase the p50 / p99 of the deliveries' e2e that started in it — a stall, a GC pause or a
rebalance shows up where it happened instead of vanishing in the run's distribution.

A **phase** is a stretch the load generator ran one stack × workload: from the ledger, one per
`phase_id` (a `hopscope run`), else per `repeat`, else one per stack × workload; it spans its
events' intended send times, warm-up included, and its **warm-up** ends where its first measured
event was sent. Without a ledger (a foreign run) a phase is a stack × workload's deliveries from
first to last start. A delivery belongs to the phase of its stack × workload it started in; each
second is counted from the phase's start.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NS_PER_S = 1_000_000_000

PHASE_COLUMNS = ["stack", "workload", "phase", "repeat", "start_ns", "end_ns", "warmup_end_ns"]
PER_SECOND_COLUMNS = [
    "stack",
    "workload",
    "phase",
    "second",
    "second_start_ns",
    "deliveries",
    "p50_ms",
    "p99_ms",
]

#: a delivery that starts this long after its phase's last send still belongs to it (a root span
#: starts at its event's intended send time, so this only absorbs clock rounding)
PHASE_SLACK_NS = NS_PER_S


def _phase_key(ledger: pd.DataFrame) -> pd.Series:
    """The ledger's phase of each row: its phase_id, else its repeat, else one phase."""
    if "phase_id" in ledger and ledger["phase_id"].notna().any():
        return ledger["phase_id"].astype(object).where(ledger["phase_id"].notna(), "")
    if "repeat" in ledger:
        return ledger["repeat"].fillna(0).astype(int).map(lambda r: f"r{r}")
    return pd.Series("run", index=ledger.index, dtype=object)


def phases(ledger: pd.DataFrame | None, e2e: pd.DataFrame) -> pd.DataFrame:
    """One row per phase (PHASE_COLUMNS), in time order; `phase` is its label (the ledger's
    phase_id, "r<repeat>" or "run"), `warmup_end_ns` equals `start_ns` when it had no warm-up."""
    if ledger is not None and len(ledger) and "intended_ns" in ledger:
        led = ledger.assign(
            _phase=_phase_key(ledger),
            _warm=ledger["warmup"].fillna(False).astype(bool) if "warmup" in ledger else False,
            _repeat=ledger["repeat"].fillna(0).astype(int) if "repeat" in ledger else 0,
        )
        rows = []
        for (stack, workload, phase), g in led.groupby(["stack", "workload", "_phase"], sort=False):
            sent = g["intended_ns"].to_numpy(np.int64)
            measured = sent[~g["_warm"].to_numpy(bool)]
            start = int(sent.min())
            warm_end = int(measured.min()) if len(measured) else int(sent.max())
            rows.append(
                {"stack": stack, "workload": workload, "phase": str(phase), "repeat": int(g["_repeat"].min()),
                 "start_ns": start, "end_ns": int(sent.max()), "warmup_end_ns": warm_end}
            )  # fmt: skip
        out = pd.DataFrame(rows, columns=PHASE_COLUMNS)
    elif len(e2e) and "start_ns" in e2e:
        g = e2e.groupby(["stack", "workload"], sort=False)["start_ns"]
        out = pd.DataFrame({"start_ns": g.min(), "end_ns": g.max()}).reset_index()
        out = out.assign(phase="run", repeat=0, warmup_end_ns=out["start_ns"])[PHASE_COLUMNS]
    else:
        out = pd.DataFrame(columns=PHASE_COLUMNS)
    return out.sort_values(["start_ns", "stack", "workload"], kind="stable").reset_index(drop=True)


def assign_phases(e2e: pd.DataFrame, phase_table: pd.DataFrame) -> pd.DataFrame:
    """e2e rows (with `start_ns`) with the `phase` and `phase_start_ns` they started in; rows that
    started in no phase of their stack × workload are left out."""
    cols = ["stack", "workload", "phase", "start_ns"]
    if e2e.empty or phase_table.empty or "start_ns" not in e2e:
        return e2e.iloc[0:0].assign(phase=pd.Series(dtype=object), phase_start_ns=pd.Series(dtype=np.int64))
    left = e2e.assign(start_ns=e2e["start_ns"].astype(np.int64)).sort_values("start_ns", kind="stable")
    right = phase_table[[*cols, "end_ns"]].rename(columns={"start_ns": "phase_start_ns"})
    right = right.assign(phase_start_ns=right["phase_start_ns"].astype(np.int64)).sort_values(
        "phase_start_ns"
    )
    # each delivery to the latest phase of its pair that started before it …
    out = pd.merge_asof(
        left,
        right,
        left_on="start_ns",
        right_on="phase_start_ns",
        by=["stack", "workload"],
        direction="backward",
    )
    # … if it started before that phase's last send
    inside = out["phase"].notna() & (out["start_ns"] <= out["end_ns"] + PHASE_SLACK_NS)
    return out[inside].drop(columns="end_ns").reset_index(drop=True)


def per_second(e2e: pd.DataFrame, phase_table: pd.DataFrame) -> pd.DataFrame:
    """Per stack × workload × phase × second since the phase's start (PER_SECOND_COLUMNS): the
    deliveries that started in that second, the p50 and p99 of their e2e (ms; numpy's linear
    interpolation, as every quantile in the analysis)."""
    d = assign_phases(e2e, phase_table)
    d = d[np.isfinite(d["e2e_ms"].to_numpy(float))] if len(d) else d
    if d.empty:
        return pd.DataFrame(columns=PER_SECOND_COLUMNS)
    second = (d["start_ns"].to_numpy(np.int64) - d["phase_start_ns"].to_numpy(np.int64)) // NS_PER_S
    d = d.assign(second=second)
    # the phase's start is one value per phase: a key, so each bin keeps it
    g = d.groupby(["stack", "workload", "phase", "phase_start_ns", "second"], sort=False)["e2e_ms"]
    out = pd.DataFrame({"deliveries": g.size(), "p50_ms": g.quantile(0.5), "p99_ms": g.quantile(0.99)})
    out = out.reset_index()
    out["second_start_ns"] = (
        out["phase_start_ns"].astype(np.int64) + out["second"].astype(np.int64) * NS_PER_S
    )
    out = out.sort_values(["second_start_ns", "stack", "workload"], kind="stable").reset_index(drop=True)
    return out[PER_SECOND_COLUMNS]
