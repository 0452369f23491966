"""Means, variances and co-moments that merge exactly across partitions (Chan et al.'s pairwise
update): each partition sends (n, mean, Σ squared deviations), never its values.

Sums of squares taken raw (Σx², then Σx² − n·mean²) lose the variance to cancellation when
the mean is large against the spread, as latencies in ns are; the centred form does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Moments:
    """n values: their count, mean and Σ (x − mean)², plus min and max."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        v = np.asarray(values, dtype=np.float64)
        if not len(v):
            return cls()
        mean = float(v.mean())
        return cls(len(v), mean, float(((v - mean) ** 2).sum()), float(v.min()), float(v.max()))

    def merge(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(
            n,
            self.mean + delta * other.n / n,
            self.m2 + other.m2 + delta * delta * self.n * other.n / n,
            min(self.min, other.min),
            max(self.max, other.max),
        )

    @property
    def std(self) -> float:
        """Population standard deviation (numpy's default, as the single-process path)."""
        return float(np.sqrt(self.m2 / self.n)) if self.n else float("nan")


@dataclass
class CoMoments:
    """Per column h of a deliveries × hops matrix and its row sums E, over the same n rows:
    mean of each column, mean of E, Σ (E − mean_E)² and Σ (H_h − mean_h)(E − mean_E) — what
    Cov(H, E) / Var(E) (the variance shares) needs, mergeable. Columns are named so partitions
    that saw different hops merge (a hop a partition lacks is 0 on each of its rows)."""

    n: int = 0
    mean_e: float = 0.0
    m2_e: float = 0.0
    mean_h: dict[str, float] = field(default_factory=dict)
    c_he: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, labels: list[str], values: np.ndarray) -> CoMoments:
        n = values.shape[0]
        if n == 0:
            return cls()
        e = values.sum(1)
        mean_e = float(e.mean())
        de = e - mean_e
        mean_h = values.mean(0)
        # Σ (H − mean_h)(E − mean_E) = Σ H (E − mean_E): no n × k temporary
        c = np.einsum("ij,i->j", values, de)
        return cls(
            n,
            mean_e,
            float((de * de).sum()),
            dict(zip(labels, mean_h.tolist(), strict=True)),
            dict(zip(labels, c.tolist(), strict=True)),
        )

    def merge(self, other: CoMoments) -> CoMoments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        w = self.n * other.n / n
        de = other.mean_e - self.mean_e
        mean_h, c_he = {}, {}
        for label in dict.fromkeys([*self.mean_h, *other.mean_h]):
            a, b = self.mean_h.get(label, 0.0), other.mean_h.get(label, 0.0)
            mean_h[label] = a + (b - a) * other.n / n
            c_he[label] = self.c_he.get(label, 0.0) + other.c_he.get(label, 0.0) + (b - a) * de * w
        return CoMoments(
            n, self.mean_e + de * other.n / n, self.m2_e + other.m2_e + de * de * w, mean_h, c_he
        )

    def var_share(self, label: str) -> float:
        """Cov(H, E) / Var(E) (NaN when E does not vary)."""
        return self.c_he.get(label, 0.0) / self.m2_e if self.m2_e > 0 else float("nan")
