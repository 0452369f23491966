"""Service-map edges: named on spans (`Edge`), and a run's map rebuilt from its span table with
known calls, errors and durations."""

from __future__ import annotations

import pyarrow as pa
import pytest

from hopscope.analysis.service_map import SERVICE_MAP_COLUMNS, service_map
from hopscope.core.schema import SPAN_SCHEMA
from hopscope.instrumentation.edges import KAFKA, POSTGRES, Edge, messaging_from


def test_an_edge_fills_its_own_end_with_the_spans_service() -> None:
    assert messaging_from(KAFKA).attributes("kafka.notifier") == {
        "hopscope.edge.client": "kafka",
        "hopscope.edge.server": "kafka.notifier",
        "hopscope.edge.type": "messaging_system",
    }
    assert Edge(server=POSTGRES).attributes("hopscope.loadgen") == {
        "hopscope.edge.client": "hopscope.loadgen",
        "hopscope.edge.server": "postgresql",
    }
    with pytest.raises(ValueError, match="at least one end"):
        Edge()
    with pytest.raises(ValueError, match="edge type 'rpc'"):
        Edge(server="x", type="rpc")


def _span(
    i: int, ms: float, edge: dict[str, str] | None, *, event: str, status: str = "OK", hop: str = "h"
) -> dict:
    return {
        "trace_id": f"{i:032x}", "span_id": f"{i:016x}", "parent_span_id": None, "links": [],
        "name": hop, "kind": "CONSUMER", "start_ns": 1_000_000_000, "end_ns": 1_000_000_000 + int(ms * 1e6),
        "status": status, "service": "svc", "stack": "kafka", "workload": "write_notify",
        "event_id": event, "hop": hop, "derived": False,
        "attributes": [*(edge or {}).items(), ("messaging.system", "kafka")], "resource": [], "source": "t",
    }  # fmt: skip


def test_the_map_counts_each_named_edge_and_leaves_out_warm_up() -> None:
    consume = messaging_from(KAFKA).attributes("kafka.notifier")
    insert = Edge(server=POSTGRES, type="database").attributes("hopscope.loadgen")
    rows = [_span(i, ms=float(i), edge=consume, event=f"e{i}", hop="notifier.consume") for i in range(1, 101)]
    rows += [_span(200 + i, ms=2.0, edge=insert, event=f"e{i}", hop="client.insert",
                   status="ERROR" if i % 10 == 0 else "OK") for i in range(1, 51)]  # fmt: skip
    rows += [_span(300 + i, ms=50.0, edge=None, event=f"e{i}") for i in range(1, 11)]  # names no edge
    rows += [_span(400, ms=999.0, edge=consume, event="warm-1", hop="notifier.consume")]
    table = pa.Table.from_pylist(rows, schema=SPAN_SCHEMA)

    edges = service_map(table, warmup_events={"warm-1"})
    assert list(edges.columns) == SERVICE_MAP_COLUMNS
    got = edges.set_index(["client", "server"])
    assert set(got.index) == {("kafka", "kafka.notifier"), ("hopscope.loadgen", "postgresql")}
    consumed = got.loc[("kafka", "kafka.notifier")]
    assert consumed["calls"] == 100 and consumed["errors"] == 0
    assert consumed["connection_type"] == "messaging_system" and consumed["hops"] == "notifier.consume"
    assert consumed["p50_ms"] == pytest.approx(50.5, abs=1e-6)  # durations 1..100 ms
    assert consumed["max_ms"] == pytest.approx(100.0, abs=1e-6)  # the 999 ms warm-up span is left out
    inserted = got.loc[("hopscope.loadgen", "postgresql")]
    assert (inserted["calls"], inserted["errors"], inserted["connection_type"]) == (50, 5, "database")


def test_spans_without_edges_make_an_empty_map() -> None:
    table = pa.Table.from_pylist([_span(1, 1.0, None, event="e1")], schema=SPAN_SCHEMA)
    assert service_map(table).empty and list(service_map(table).columns) == SERVICE_MAP_COLUMNS
