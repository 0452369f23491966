"""Per-hop statistics over a deliveries × hops matrix of critical-path contributions.

Definitions (analysis/README.md has the maths):
- count / mean / std / quantiles / max: over the deliveries on whose path the hop appears;
- var_share = Cov(H, E) / Var(E), with an absent hop counted 0 (adds up to 1);
- tail_share_q = (E[H | E ≥ e_q] − E[H]) / (E[E | E ≥ e_q] − E[E]) (adds up to 1);
- crit_share = Σ H / Σ E (adds up to 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99, "p999_ms": 0.999}
NS_PER_MS = 1e6


@dataclass
class PairMatrix:
    labels: list[str]  # column names, in path order
    values: np.ndarray  # float64 ns, deliveries × hops, 0 where absent
    present: np.ndarray  # bool, same shape
    mean_offset_ns: np.ndarray  # per hop: mean position of its first section after the root start


def build_matrix(
    delivery_local: np.ndarray,
    label: np.ndarray,
    value_ns: np.ndarray,
    offset_ns: np.ndarray,
    n_deliveries: int,
    label_names: np.ndarray,
) -> PairMatrix:
    """Pivot the long table of one stack × workload (deliveries numbered 0..n-1) into a dense matrix.

    The columns are ordered by mean offset before the matrix is filled, so it is written
    once in its final order (at 10 M spans a pair's matrix is ~56 MB, and a reordered copy
    and int64 counts beside it were most of the statistics' memory).
    """
    # the labels used, in code order, and each row's column (labels are small codes: no sort)
    used = np.flatnonzero(np.bincount(label, minlength=len(label_names)))
    column_of = np.zeros(len(label_names), np.intp)
    column_of[used] = np.arange(len(used))
    col = column_of[label]
    k = len(used)
    rows_per_col = np.bincount(col, minlength=k)
    mean_off = np.bincount(col, weights=offset_ns, minlength=k) / np.maximum(rows_per_col, 1)
    order = np.argsort(mean_off, kind="stable")
    position = np.empty(k, np.intp)
    position[order] = np.arange(k)
    flat = delivery_local * k + position[col]
    del col
    present = np.zeros(n_deliveries * k, bool)
    present[flat] = True
    values = np.zeros(n_deliveries * k, np.float64)
    if present.sum() == len(flat):
        values[flat] = value_ns  # each (delivery, label) once, as the walk sums them
    else:  # repeated cells (a long table from elsewhere): summed
        values = np.bincount(flat, weights=value_ns, minlength=n_deliveries * k)
    return PairMatrix(
        labels=[str(label_names[u]) for u in used[order]],
        values=values.reshape(n_deliveries, k),
        present=present.reshape(n_deliveries, k),
        mean_offset_ns=mean_off[order],
    )


def shares(values: np.ndarray) -> dict[str, np.ndarray]:
    """Additive attributions of the row sums' variance, tails and total to the columns."""
    e = values.sum(1)
    n = len(e)
    out: dict[str, np.ndarray] = {}
    k = values.shape[1]
    if n == 0:
        for key in ("var_share", "tail_share_p99", "tail_share_p999", "crit_share"):
            out[key] = np.full(k, np.nan)
        return out
    mean_h = values.mean(0)
    mean_e = e.mean()
    # Σ (H - mean_h)(E - mean_e) = Σ H (E - mean_e): summed without n × k temporaries, and by
    # einsum's own loop rather than BLAS, whose threads spin on the cores the analysis uses
    cov = np.einsum("ij,i->j", values, e - mean_e) / n
    var_e = ((e - mean_e) ** 2).sum() / n
    out["var_share"] = cov / var_e if var_e > 0 else np.full(k, np.nan)
    for key, q in (("tail_share_p99", 0.99), ("tail_share_p999", 0.999)):
        tail = e >= np.quantile(e, q)
        excess = e[tail].mean() - mean_e
        out[key] = (values[tail].mean(0) - mean_h) / excess if excess > 0 else np.full(k, np.nan)
    total = e.sum()
    out["crit_share"] = values.sum(0) / total if total > 0 else np.full(k, np.nan)
    return out


def distribution(v: np.ndarray) -> dict[str, float]:
    """mean_ms, std_ms, the QUANTILES and max_ms of `v` (ms; NaN when empty)."""
    if not len(v):
        return {"mean_ms": np.nan, "std_ms": np.nan, **dict.fromkeys(QUANTILES, np.nan), "max_ms": np.nan}
    qv = np.quantile(v, list(QUANTILES.values()))
    return {
        "mean_ms": float(v.mean()),
        "std_ms": float(v.std()),
        **{name: float(q) for name, q in zip(QUANTILES, qv, strict=True)},
        "max_ms": float(v.max()),
    }


def hop_rows(m: PairMatrix) -> list[dict[str, object]]:
    """One statistics row per hop of a stack × workload (values in ms)."""
    sh = shares(m.values)
    rows: list[dict[str, object]] = []
    for j, hop in enumerate(m.labels):
        v = m.values[m.present[:, j], j] / NS_PER_MS
        row: dict[str, object] = {
            "hop": hop,
            "order": j,
            "count": len(v),
            **distribution(v),
        }
        for key, arr in sh.items():
            row[key] = float(arr[j])
        row["mean_offset_ms"] = float(m.mean_offset_ns[j] / NS_PER_MS)
        rows.append(row)
    return rows


def growth_rows(m: PairMatrix) -> list[dict[str, object]]:
    """Quantiles of the partial sum of contributions after each hop along the path."""
    if m.values.shape[0] == 0:
        return []
    partial = np.cumsum(m.values, axis=1) / NS_PER_MS
    qs = np.quantile(partial, [0.5, 0.99, 0.999], axis=0)
    return [
        {
            "hop": hop,
            "order": j,
            "p50_ms": float(qs[0, j]),
            "p99_ms": float(qs[1, j]),
            "p999_ms": float(qs[2, j]),
        }
        for j, hop in enumerate(m.labels)
    ]
