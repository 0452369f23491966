"""The analysis on a Dask cluster, past one machine (`hopscope analyze RUN --cluster ADDRESS`
or `--workers N`; analysis/README.md, "Distributed"). Needs `hopscope[distributed]`."""

from __future__ import annotations

from .cluster import ClusterError, connect
from .engine import SPANS_PER_PARTITION, DistributedAnalysis, Engine, analyze_distributed
from .sources import SourceError
from .write import write_distributed

__all__ = [
    "SPANS_PER_PARTITION",
    "ClusterError",
    "DistributedAnalysis",
    "Engine",
    "SourceError",
    "analyze_distributed",
    "connect",
    "write_distributed",
]
