"""The Attribution dashboard's SQL against the real Postgres results tables.

A run with known hop latencies goes through the real analysis (`Run`), then
`write_results` into the real Postgres; every SQL query of the dashboard (its
variables and macros interpolated the way Grafana does) must run and return
exactly the columns its panel declares, and the numbers must be the truth.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from rich.console import Console

from hopscope.analysis import Run
from hopscope.core.schema import SPAN_SCHEMA
from hopscope.dashboards import build
from hopscope.dashboards import queries as q
from hopscope.dashboards.results_tables import TABLES, write_results
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.lifecycle import up
from hopscope.deploy.services.postgres import Postgres

HOPS = ("client.write", "broker.append", "subscriber.receive")
N_EVENTS = 400


def _spans(stack: str, workload: str, durations_ms: np.ndarray, t0: int) -> list[dict]:
    """One trace per event: the hops as a chain of child spans, back to back, the last one a receipt."""
    rows = []
    for e, durs in enumerate(durations_ms):
        trace = uuid.uuid4().hex
        start = t0 + e * 10_000_000
        parent = None
        for h, (hop, d) in enumerate(zip(HOPS, durs, strict=True)):
            span_id = uuid.uuid4().hex[:16]
            end = start + round(d * 1e6)
            attrs = {"hopscope.subscriber": "s1"} if h == len(HOPS) - 1 else {}
            rows.append(
                dict(
                    trace_id=trace, span_id=span_id, parent_span_id=parent, links=[], name=hop,
                    kind=("CLIENT", "PRODUCER", "CONSUMER")[h], start_ns=start, end_ns=end, status="UNSET",
                    service=f"{stack}.{hop.split('.')[0]}", stack=stack, workload=workload, event_id=f"{stack}-{e}",
                    hop=hop, derived=False, attributes=list(attrs.items()), resource=[], source="test",
                )
            )  # fmt: skip
            parent, start = span_id, end
    return rows


@pytest.fixture(scope="module")
def postgres_ctx() -> Context:
    # Only what this module needs (the session-wide `deployed` starts every stack).
    ctx = Context(load_config())
    up(ctx, "postgres", Console(stderr=True))
    return ctx


@pytest.fixture(scope="module")
def written(postgres_ctx: Context) -> dict:
    rng = np.random.default_rng(7)
    workload = f"dashcheck_{uuid.uuid4().hex[:8]}"
    truth = {
        # kafka: the broker hop carries a heavy tail; harper: uniform, small hops.
        "kafka": np.column_stack([rng.lognormal(0, 0.2, N_EVENTS), rng.pareto(2.5, N_EVENTS) * 5 + 2, rng.uniform(0.5, 1.5, N_EVENTS)]),
        "harper": np.column_stack([rng.uniform(1, 2, N_EVENTS), rng.uniform(0.5, 1, N_EVENTS), rng.uniform(0.5, 1.5, N_EVENTS)]),
    }  # fmt: skip
    rows = _spans("kafka", workload, truth["kafka"], 1_700_000_000_000_000_000)
    rows += _spans("harper", workload, truth["harper"], 1_700_000_000_000_000_000)
    run = Run.from_table(pa.Table.from_pylist(rows, schema=SPAN_SCHEMA), correct_skew=False)
    dsn = Postgres(postgres_ctx).dsn()
    run_id = f"test-{workload}"
    counts = write_results(run, dsn, run_id, run_dir="/tmp/none")
    again = write_results(run, dsn, run_id, run_dir="/tmp/none")
    yield {
        "dsn": dsn,
        # what Grafana connects as: the dashboard's queries run as the read-only role
        "reader_dsn": Postgres(postgres_ctx).reader_dsn() or dsn,
        "run_id": run_id,
        "workload": workload,
        "truth": truth,
        "counts": counts,
        "again": again,
    }
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            conn.execute(f"DELETE FROM {table.name} WHERE run_id = %s", (run_id,))


def test_results_are_the_ground_truth_and_idempotent(written: dict) -> None:
    assert written["counts"] == written["again"]
    assert written["counts"]["hopscope_hop_stats"] == 2 * len(HOPS)
    with psycopg.connect(written["dsn"]) as conn:
        for table in TABLES:
            n = conn.execute(
                f"SELECT count(*) FROM {table.name} WHERE run_id = %s", (written["run_id"],)
            ).fetchone()
            assert n[0] == written["counts"][table.name], f"{table.name} holds a doubled or partial run"
        e2e = dict(
            (r[0], r[1:])
            for r in conn.execute(
                "SELECT stack, count, mean_ms, p99_ms, max_ms FROM hopscope_e2e_summary WHERE run_id = %s",
                (written["run_id"],),
            )
        )
        hops = conn.execute(
            "SELECT stack, hop, hop_order, count, p99_ms, var_share FROM hopscope_hop_stats WHERE run_id = %s"
            " ORDER BY stack, hop_order",
            (written["run_id"],),
        ).fetchall()
    for stack, durs in written["truth"].items():
        total = durs.sum(axis=1)
        count, mean, p99, mx = e2e[stack]
        assert count == N_EVENTS
        assert mean == pytest.approx(total.mean(), abs=1e-3)
        assert p99 == pytest.approx(np.quantile(total, 0.99), abs=1e-3)
        assert mx == pytest.approx(total.max(), abs=1e-3)
        rows = [r for r in hops if r[0] == stack]
        assert [r[1] for r in rows] == list(HOPS), "hops must come back in path order"
        for (_, hop, _, n, hop_p99, _), j in zip(rows, range(len(HOPS)), strict=True):
            assert n == N_EVENTS, hop
            assert hop_p99 == pytest.approx(np.quantile(durs[:, j], 0.99), abs=1e-3), hop
        assert sum(r[5] for r in rows) == pytest.approx(1.0, abs=1e-9)  # variance shares add up to 1
    kafka_shares = {r[1]: r[5] for r in hops if r[0] == "kafka"}
    assert max(kafka_shares, key=kafka_shares.get) == "broker.append"


def test_every_attribution_sql_query_runs_and_returns_the_panel_columns(written: dict) -> None:
    doc = build.dashboards()["attribution.json"]
    values = q.sql_values(
        doc, {"run_id": written["run_id"], "stack": "kafka", "workload": written["workload"]}
    )
    queries = [x for x in q.iter_queries("attribution.json", doc) if x.language == q.SQL]
    assert len(queries) >= 5
    graph_frames: set[str] = set()
    with psycopg.connect(written["reader_dsn"]) as conn:
        for query in queries:
            sql = q.interpolate_sql(query.text, values, query.where)
            with conn.cursor() as cur:
                cur.execute(sql)
                columns = tuple(d.name for d in cur.description)
                rows = cur.fetchall()
            assert rows, f"{query.where}: no rows for run {written['run_id']}\n{sql}"
            if query.panel_type == "nodeGraph":
                # Two frames, no organize: the contract is Grafana's Node Graph field names.
                frame = query.target["refId"]
                assert not q.node_graph_frame_problems(frame, columns), (
                    f"{query.where} {frame}: {q.node_graph_frame_problems(frame, columns)}"
                )
                graph_frames.add(frame)
            elif query.expected_columns is not None:
                assert columns == query.expected_columns, f"{query.where}: columns {columns}"
            elif query.target["format"] == "time_series":
                assert columns == ("time", "metric", "value"), (
                    f"{query.where}: time series needs time/metric/value"
                )
            if "stack IN" in sql and "stack" in columns:
                assert {r[columns.index("stack")] for r in rows} == {"kafka"}, f"{query.where} ignores $stack"
    assert graph_frames == {"nodes", "edges"}, "the Hop graph's frames must go through this check"


def test_the_attribution_variables_offer_the_written_run(written: dict) -> None:
    doc = build.dashboards()["attribution.json"]
    found = {}
    with psycopg.connect(written["reader_dsn"]) as conn:
        for name, var in q.variables(doc).items():
            sql = q.substitute(var["query"], {"run_id": written["run_id"]}, f"variable {name}")
            found[name] = {r[0] for r in conn.execute(sql)}
    assert written["run_id"] in found["run_id"]
    assert found["stack"] == {"kafka", "harper"}
    assert found["workload"] == {written["workload"]}


def test_analyze_to_postgres_writes_the_runs_own_statistics(postgres_ctx: Context, tmp_path: Path) -> None:
    """`hopscope analyze RUN --to-postgres DSN` (the CLI, as a user types it): the rows in Postgres
    are the run's hop statistics; a Postgres that refuses is a clear error and exit 1."""
    import json
    import subprocess
    import sys

    from hopscope.analysis import load

    run_dir = tmp_path / "synth-run"
    cli = [sys.executable, "-m", "hopscope.cli"]
    subprocess.run([*cli, "synth", "--out", str(run_dir), "--events", "300"], check=True, capture_output=True)
    dsn = Postgres(postgres_ctx).dsn()
    done = subprocess.run(
        [*cli, "analyze", str(run_dir), "--to-postgres", dsn], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = json.loads((run_dir / "manifest.json").read_text()).get("run_id") or run_dir.name
    assert f"postgres: run {run_id}" in done.stdout
    stats = load(run_dir).hop_stats()
    try:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT stack, workload, hop, count, p99_ms FROM hopscope_hop_stats WHERE run_id = %s",
                (run_id,),
            ).fetchall()
        assert len(rows) == len(stats)
        want = {(r.stack, r.workload, r.hop): (r.count, r.p99_ms) for r in stats.itertuples()}
        for stack, workload, hop, count, p99 in rows:
            assert want[(stack, workload, hop)][0] == count
            assert want[(stack, workload, hop)][1] == pytest.approx(p99, rel=1e-9)
    finally:
        with psycopg.connect(dsn) as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table.name} WHERE run_id = %s", (run_id,))

    refused = subprocess.run(
        [*cli, "analyze", str(run_dir), "--to-postgres", "postgresql://u:p@127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert "writing results to Postgres 127.0.0.1:1/none failed" in refused.stderr


def test_hop_graph_panel_draws_the_runs_path_with_its_statistics(written: dict) -> None:
    """The node graph's two frames for the known run: nodes are the checkpoints, edges chain
    event start → after each hop in path order, with each hop's true p50 / p99 as stats."""
    doc = build.dashboards()["attribution.json"]
    values = q.sql_values(
        doc, {"run_id": written["run_id"], "stack": "kafka", "workload": written["workload"]}
    )
    frames = {
        x.target["refId"]: q.interpolate_sql(x.text, values, x.where)
        for x in q.iter_queries("attribution.json", doc)
        if x.panel_type == "nodeGraph"
    }
    with psycopg.connect(written["reader_dsn"]) as conn:
        nodes_cur = conn.execute(frames["nodes"])
        node_cols = [d.name for d in nodes_cur.description]
        nodes = {r[node_cols.index("id")] for r in nodes_cur.fetchall()}
        edges_cur = conn.execute(frames["edges"])
        edge_cols = [d.name for d in edges_cur.description]
        edges = [dict(zip(edge_cols, r, strict=True)) for r in edges_cur.fetchall()]
    assert node_cols == ["id", "title", "subtitle"]
    assert edge_cols == [
        "id",
        "source",
        "target",
        "detail__hop",
        "mainstat",
        "secondarystat",
        "detail__crit_share",
    ]
    pair = f"kafka · {written['workload']} · "
    chain = [f"{pair}event.start", *(f"{pair}after:{h}" for h in HOPS)]
    assert nodes == set(chain)
    by_hop = {e["detail__hop"]: e for e in edges}
    assert len(edges) == len(HOPS) and set(by_hop) == set(HOPS)  # harper's edges are filtered out
    durs = written["truth"]["kafka"]
    for j, hop in enumerate(HOPS):
        e = by_hop[hop]
        assert (e["source"], e["target"]) == (chain[j], chain[j + 1]), hop
        assert e["mainstat"] == pytest.approx(np.quantile(durs[:, j], 0.5), abs=1e-3), hop
        assert e["secondarystat"] == pytest.approx(np.quantile(durs[:, j], 0.99), abs=1e-3), hop


def test_the_grafana_role_reads_the_results_and_nothing_else(written: dict, postgres_ctx: Context) -> None:
    """#22: the data source's role can neither read a pipeline table nor create anything."""
    postgres = Postgres(postgres_ctx)
    if postgres.is_external():
        pytest.skip("the read-only role is made by hopscope's own Postgres")
    reader = postgres.reader_dsn()
    assert reader is not None
    with psycopg.connect(written["dsn"], autocommit=True) as conn:
        # a pipeline-side table, as the pipelines' role (the bootstrap superuser) makes them
        conn.execute("CREATE TABLE IF NOT EXISTS hopscope_health (id bigserial PRIMARY KEY, note text)")
    with psycopg.connect(reader, autocommit=True) as conn:
        assert conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (
            "hopscope_reader",
            False,
        )
        n = conn.execute(
            "SELECT count(*) FROM hopscope_runs WHERE run_id = %s", (written["run_id"],)
        ).fetchone()
        assert n == (1,)
        refused = {
            "read a pipeline table": "SELECT * FROM hopscope_health",
            "create a function": "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "create a temporary function": "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "create a table": "CREATE TABLE public.g (x int)",
            "write a results table": "DELETE FROM hopscope_runs",
        }
        for what, statement in refused.items():
            with pytest.raises(psycopg.Error) as err:
                conn.execute(statement)
            assert err.value.sqlstate in ("42501", "25006"), f"{what}: {err.value}"  # denied / read-only
        # read-only is only the role's default, which any session may switch off: the
        # privileges alone must refuse every one of these
        conn.execute("SET default_transaction_read_only = off")
        for what, statement in refused.items():
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                continue
            pytest.fail(f"the Grafana role could {what}")
