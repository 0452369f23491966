"""The known truth of a synthetic run, from the drawn hop values (not from the spans): per hop
the quantiles, mean and additive shares, the top tail hop, the injected breakage."""

from __future__ import annotations

import numpy as np

from .layout import PairResult
from .model import NS, PairSpec

#: the quantiles the truth states (the analysis' hop statistics use the same names)
QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99, "p999_ms": 0.999}


def shares(values: np.ndarray) -> dict[str, np.ndarray]:
    """Additive attributions of the row sums' variance, tails and total to the columns
    (computed here, independently of the analysis, so the truth can check it)."""
    e = values.sum(1)
    k = values.shape[1]
    keys = ("var_share", "tail_share_p99", "tail_share_p999", "crit_share")
    if len(e) == 0:
        return {key: np.full(k, np.nan) for key in keys}
    n = len(e)
    mean_h = values.mean(0)
    mean_e = e.mean()
    cov = np.einsum("ij,i->j", values, e - mean_e) / n
    var_e = ((e - mean_e) ** 2).sum() / n
    out = {"var_share": cov / var_e if var_e > 0 else np.full(k, np.nan)}
    for key, q in (("tail_share_p99", 0.99), ("tail_share_p999", 0.999)):
        tail = e >= np.quantile(e, q)
        excess = e[tail].mean() - mean_e
        out[key] = (values[tail].mean(0) - mean_h) / excess if excess > 0 else np.full(k, np.nan)
    total = e.sum()
    out["crit_share"] = values.sum(0) / total if total > 0 else np.full(k, np.nan)
    return out


def pair_truth(pair: PairSpec, res: PairResult, gap: np.ndarray, measured: np.ndarray | None = None) -> dict:
    """The truth over the measured deliveries (`measured`: per delivery, not a warm-up event's)."""
    keep = np.ones(len(res.hop_matrix), bool) if measured is None else measured
    mat = res.hop_matrix[keep].astype(np.float64)
    gap = gap[keep]
    e2e = mat.sum(1)
    sh = shares(mat)
    hops = {}
    for j, h in enumerate(res.hops):
        v = mat[:, j] / NS
        row = {
            "count": len(v),
            "mean_ms": float(v.mean()),
            "std_ms": float(v.std()),
            "max_ms": float(v.max()),
        }
        row.update({k: float(np.quantile(v, q)) for k, q in QUANTILES.items()})
        row.update({k: float(a[j]) for k, a in sh.items()})
        hops[h] = row
    return {
        "hops": hops,
        "hop_order": res.hops,
        "deliveries": len(e2e),
        "e2e_ms": {k: float(np.quantile(e2e / NS, q)) for k, q in QUANTILES.items()}
        | {"mean_ms": float(e2e.mean() / NS)},
        "top_tail_hop_p99": _top_hop(res.hops, sh["tail_share_p99"]),
        "top_tail_hop_p999": _top_hop(res.hops, sh["tail_share_p999"]),
        "unattributed_mean_ms": float(gap.mean() / NS),
        "breakage": res.broken,
        "missing_expected_hops": res.missing_hops_truth,
    }


def _top_hop(hops: list[str], tail_shares: np.ndarray) -> str | None:
    """The hop with the largest tail share; None when no share is defined (every e2e equal:
    no tail excess to share, as in a run whose latencies are all constant)."""
    if np.isnan(tail_shares).all():
        return None
    return hops[int(np.nanargmax(tail_shares))]
