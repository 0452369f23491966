"""Figures of one phase from its ledger alone (no spans needed): end-to-end latency per
delivery, point-read latency, and per-rate figures of an ingest sweep.

These are the numbers compared across repeats and across the tracing on/off A/B, so they
must not depend on tracing: the ledger measures from the event's intended send time to
each expected subscriber's first receipt, on the generator's clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

POINT_READ = "point_read"
QUANTILES = {"p50": 50.0, "p99": 99.0, "p999": 99.9}


def latency_summary(values_ms: np.ndarray) -> dict[str, Any]:
    if values_ms.size == 0:
        return {"count": 0}
    out: dict[str, Any] = {"count": int(values_ms.size), "mean": float(values_ms.mean())}
    for name, q in QUANTILES.items():
        out[name] = float(np.percentile(values_ms, q))
    out["max"] = float(values_ms.max())
    return out


def delivery_latencies(ledger: pd.DataFrame) -> pd.DataFrame:
    """One row per (event, expected subscriber) delivered: its first receipt − intended time."""
    rows: list[tuple[str, float, float]] = []
    for ev, intended, expected, receipts, rate in zip(
        ledger["event_id"],
        ledger["intended_ns"],
        ledger["expected_subscribers"],
        ledger["receipts"],
        ledger["target_rate"],
        strict=True,
    ):
        if receipts is None or len(receipts) == 0:
            continue
        wanted = set(expected) if expected is not None else set()
        first: dict[str, int] = {}
        for rec in receipts:
            sub, at = rec["subscriber"], rec["received_ns"]
            if sub in wanted and (sub not in first or at < first[sub]):
                first[sub] = at
        for at in first.values():
            rows.append((ev, (at - intended) / 1e6, rate))
    return pd.DataFrame(rows, columns=["event_id", "latency_ms", "target_rate"])


def schedule_lag(ledger: pd.DataFrame) -> dict[str, Any]:
    """How far the load generator fell behind its schedule: sent − intended of every event it
    sent (point reads included), in ms. A p99 above a millisecond means the generator, not the
    stack, shaped the phase (the host is short of CPU)."""
    sent = ledger[ledger["sent_ns"].notna()]
    lag = ((sent["sent_ns"] - sent["intended_ns"]) / 1e6).to_numpy(dtype=float)
    return latency_summary(lag)


def phase_figures(ledger_path: Path, workload: str) -> dict[str, Any]:
    """Summary figures of one phase; `{}` plus a note when the ledger is missing."""
    if not ledger_path.exists():
        return {"note": f"{ledger_path} missing"}
    led = pq.read_table(ledger_path).to_pandas()
    measured = led[~led["warmup"].astype(bool)]
    main = measured[measured["workload"] != POINT_READ]
    outcomes = {str(k): int(v) for k, v in main["outcome"].value_counts().items()}
    deliveries = delivery_latencies(main)
    out: dict[str, Any] = {
        "events": len(main),
        "outcomes": outcomes,
        "e2e_ms": latency_summary(deliveries["latency_ms"].to_numpy()),
        "schedule_lag_ms": schedule_lag(measured),
    }
    reads = measured[measured["workload"] == POINT_READ]
    if len(reads):
        ok = reads[(reads["ack_status"] == "ok") & reads["acked_ns"].notna()]
        lat = ((ok["acked_ns"] - ok["intended_ns"]) / 1e6).to_numpy(dtype=float)
        out["point_read_ms"] = latency_summary(lat) | {
            "requested": len(reads),
            "errors": int((reads["ack_status"] != "ok").sum()),
        }
    rates = sorted(main["target_rate"].dropna().unique())
    if workload == "ingest" or len(rates) > 1:
        sweep = []
        for rate in rates:
            step = main[main["target_rate"] == rate]
            d = deliveries[deliveries["target_rate"] == rate]["latency_ms"].to_numpy()
            sent = step["sent_ns"].dropna()
            span_s = (sent.max() - sent.min()) / 1e9 if len(sent) > 1 else 0.0
            sweep.append(
                {
                    "target_rate": float(rate),
                    "events": len(step),
                    "delivered": int((step["outcome"] == "delivered").sum()),
                    "achieved_rate": float((len(sent) - 1) / span_s) if span_s > 0 else None,
                    **{f"{k}_ms": v for k, v in latency_summary(d).items() if k != "count"},
                }
            )
        out["sweep"] = sweep
    return out
