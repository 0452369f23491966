"""The service map of a run: one row per client → server edge that its spans name.

A span that crosses from one service to another names the edge (`hopscope.edge.client`,
`hopscope.edge.server`, `hopscope.edge.type`; instrumentation/edges.py). The collector counts
the same edges live for the dashboards; this is the run's own account, from its span file, in
the analysis' terms: calls, errors and the latency of the naming span per edge, warm-up events
left out as in every other figure.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hopscope.core.attributes import ATTR_EDGE_CLIENT, ATTR_EDGE_SERVER, ATTR_EDGE_TYPE

from .stats import NS_PER_MS

SERVICE_MAP_COLUMNS = [
    "stack",
    "workload",
    "client",
    "server",
    "connection_type",  # "" (request/response), messaging_system, database
    "hops",  # the hop(s) whose spans name the edge, comma-separated
    "calls",
    "errors",
    "p50_ms",
    "p99_ms",
    "max_ms",
]
_READ = ["stack", "workload", "event_id", "hop", "name", "status", "start_ns", "end_ns", "attributes"]


def _lookup(attributes: pa.ChunkedArray | pa.Array, key: str) -> pa.Array:
    return pc.map_lookup(attributes, pa.scalar(key, pa.string()), "first")


def service_map(spans: pa.Table, warmup_events: Collection[str] = ()) -> pd.DataFrame:
    """Edges (`SERVICE_MAP_COLUMNS`) of the spans that name one; `warmup_events` are left out."""
    if spans.num_rows == 0 or "attributes" not in spans.column_names:
        return pd.DataFrame(columns=SERVICE_MAP_COLUMNS)
    attrs = spans.column("attributes")
    client = _lookup(attrs, ATTR_EDGE_CLIENT)
    server = _lookup(attrs, ATTR_EDGE_SERVER)
    named = pc.and_(pc.is_valid(client), pc.is_valid(server))
    if not pc.any(named).as_py():
        return pd.DataFrame(columns=SERVICE_MAP_COLUMNS)
    kind = _lookup(attrs, ATTR_EDGE_TYPE)
    frame = pa.table(
        {
            "stack": spans.column("stack"),
            "workload": spans.column("workload"),
            "event_id": spans.column("event_id"),
            "hop": pc.coalesce(spans.column("hop"), spans.column("name")),
            "error": pc.equal(spans.column("status"), "ERROR"),
            "ms": pc.divide(
                pc.subtract(spans.column("end_ns"), spans.column("start_ns")).cast(pa.float64()), NS_PER_MS
            ),
            "client": client,
            "server": server,
            "connection_type": pc.fill_null(kind, ""),
        }
    ).filter(named)
    df = frame.to_pandas()
    if len(warmup_events):
        df = df[~df["event_id"].isin(set(warmup_events))]
    df = df.fillna({"stack": "", "workload": ""})
    keys = ["stack", "workload", "client", "server", "connection_type"]
    rows = []
    for key, g in df.groupby(keys, sort=True):
        ms = g["ms"].to_numpy()
        rows.append(
            (
                *key,
                ", ".join(sorted(set(g["hop"]))),
                len(g),
                int(g["error"].sum()),
                float(np.percentile(ms, 50)),
                float(np.percentile(ms, 99)),
                float(ms.max()),
            )
        )
    return pd.DataFrame(rows, columns=SERVICE_MAP_COLUMNS)


def read_service_map(span_file: Path, warmup_events: Collection[str] = ()) -> pd.DataFrame:
    """`service_map` of a run's `spans.parquet` (only the columns it needs are read)."""
    schema = pq.read_schema(span_file)
    columns = [c for c in _READ if c in schema.names]
    return service_map(pq.read_table(span_file, columns=columns), warmup_events)
