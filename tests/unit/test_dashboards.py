"""The generated dashboards: committed JSON is current, panels are complete and consistent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from hopscope.dashboards import build
from hopscope.dashboards import queries as q
from hopscope.dashboards.datasources import ALL, BY_UID

GENERATED = build.render()
DOCS = build.dashboards()
PROVISIONED = yaml.safe_load((build.PROVISIONING_DIR / "datasources" / "hopscope.yaml").read_text())
GLOBAL_VARS = {"__url_time_range", "__field", "__value", "__data", "__rate_interval", "__interval", "__range"}


def _panels(doc: dict) -> list[dict]:
    return [p for p in doc["panels"] if p["type"] != "row"]


def test_build_regenerates_the_committed_files_byte_for_byte() -> None:
    for path, text in GENERATED.items():
        assert path.exists(), f"{path} is not committed: run `hopscope dashboards build`"
        assert path.read_bytes() == text.encode(), (
            f"{path} differs from what `hopscope dashboards build` writes"
        )
    assert build.check() == []


def test_build_is_deterministic() -> None:
    assert build.render() == GENERATED


def test_committed_json_dir_holds_only_generated_dashboards() -> None:
    on_disk = {p.name for p in build.JSON_DIR.glob("*.json")}
    assert on_disk == set(build.BOARDS)


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_panel_uses_a_provisioned_datasource(name: str) -> None:
    provisioned = {(d["uid"], d["type"]) for d in PROVISIONED["datasources"]}
    for panel in _panels(DOCS[name]):
        ds = panel["datasource"]
        assert (ds["uid"], ds["type"]) in provisioned, (
            f"{name} panel {panel['title']!r}: {ds} not provisioned"
        )
        for target in panel["targets"]:
            tds = target.get("datasource", ds)
            assert (tds["uid"], tds["type"]) in provisioned, (
                f"{name} {panel['title']!r} target {target['refId']}"
            )
    for var in DOCS[name]["templating"]["list"]:
        if "datasource" in var:
            assert (var["datasource"]["uid"], var["datasource"]["type"]) in provisioned


def test_provisioning_matches_the_datasource_definitions_and_holds_no_secret() -> None:
    assert [d["uid"] for d in PROVISIONED["datasources"]] == [d.uid for d in ALL]
    types = {d["type"] for d in PROVISIONED["datasources"]}
    assert types == {"prometheus", "tempo", "jaeger", "grafana-postgresql-datasource"}
    pg = next(d for d in PROVISIONED["datasources"] if d["type"] == "grafana-postgresql-datasource")
    assert re.fullmatch(r"\$\{[A-Z_]+\}", pg["secureJsonData"]["password"])
    # The Tempo service map and Prometheus exemplars point at datasources that exist.
    tempo = next(d for d in PROVISIONED["datasources"] if d["type"] == "tempo")
    assert tempo["jsonData"]["serviceMap"]["datasourceUid"] in BY_UID
    prom = next(d for d in PROVISIONED["datasources"] if d["type"] == "prometheus")
    assert all(x["datasourceUid"] in BY_UID for x in prom["jsonData"]["exemplarTraceIdDestinations"])


@pytest.mark.parametrize("name", sorted(DOCS))
def test_panels_have_title_unit_description_options_and_unique_ids(name: str) -> None:
    doc = DOCS[name]
    assert doc["title"].startswith("hopscope: ") and doc["uid"].startswith("hopscope-")
    assert "id" not in doc, "an uploaded dashboard must not carry a database id"
    ids = [p["id"] for p in doc["panels"]]
    assert ids == list(range(1, len(ids) + 1))
    for panel in _panels(doc):
        where = f"{name} panel {panel['id']}"
        assert panel.get("title"), where
        assert panel.get("description"), where
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} {panel['title']!r} has no unit"
        assert isinstance(panel.get("options"), dict), f"{where} {panel['title']!r}: options is null"
        assert panel["targets"], f"{where} {panel['title']!r} has no query"


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_variable_a_query_or_title_uses_is_defined_and_labelled(name: str) -> None:
    doc = DOCS[name]
    defined = q.variables(doc)
    for var in defined.values():
        assert var.get("label"), f"{name} variable {var['name']} has no label"
    text = json.dumps([p.get("targets") for p in doc["panels"]] + [p["title"] for p in doc["panels"]])
    text += json.dumps([v.get("query") for v in defined.values()])
    used = {m.group(1) or m.group(2) for m in re.finditer(r"\$\{(\w+)[^}]*\}|\$(\w+)", text)}
    unknown = {u for u in used if u not in defined and not u.startswith("__")}
    assert not unknown, f"{name} uses undefined variables {unknown}"
    # The reverse: a variable no query or title uses is noise in the UI.
    unused = set(defined) - used
    assert not unused, f"{name} defines unused variables {unused}"


def test_the_four_dashboards_cover_the_four_views() -> None:
    langs = {name: {x.language for x in q.iter_queries(name, doc)} for name, doc in DOCS.items()}
    assert langs["overview.json"] == {q.PROMQL}
    assert langs["hops.json"] == {q.PROMQL, q.TEMPO_SERVICE_MAP}
    assert langs["traces.json"] == {q.TRACEQL, q.JAEGER}
    assert langs["attribution.json"] == {q.SQL}
    for name in ("overview.json", "hops.json"):
        assert [v for v in q.variables(DOCS[name])] == ["stack", "workload", "hop"]
    hop_panels = [p for p in DOCS["hops.json"]["panels"] if p["type"] == "nodeGraph"]
    assert len(hop_panels) == 1


def test_slow_trace_links_point_at_the_traces_dashboard_variables() -> None:
    traces_vars = set(q.variables(DOCS["traces.json"]))
    links = [
        link["url"]
        for p in DOCS["hops.json"]["panels"]
        for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]
    assert links
    for url in links:
        assert url.startswith(f"/d/{DOCS['traces.json']['uid']}?")
        assert {m.group(1) for m in re.finditer(r"var-(\w+)=", url)} <= traces_vars


def test_interpolation_follows_grafana_rules() -> None:
    doc = DOCS["attribution.json"]
    values = q.sql_values(doc, {"run_id": "r1", "stack": "kafka", "workload": "o'brien"})
    assert values == {"run_id": "r1", "stack": "'kafka'", "workload": "'o''brien'"}
    out = q.interpolate_sql("SELECT 1 WHERE $__timeFilter(t) AND s IN ($stack)", values, "x")
    assert out == "SELECT 1 WHERE t >= now() - interval '7 days' AND s IN ('kafka')"
    assert (
        q.interpolate_promql('rate(x{a=~"$stack"}[$__rate_interval])', {"stack": "k"}, "x")
        == 'rate(x{a=~"k"}[1m])'
    )
    with pytest.raises(q.QueryError, match=r"panel 3 'P': variable \$nope has no value"):
        q.substitute("$nope", {}, "d panel 3 'P'")


def test_sql_panels_declare_their_columns() -> None:
    sql = [x for x in q.iter_queries("attribution.json", DOCS["attribution.json"]) if x.language == q.SQL]
    assert sql
    for query in sql:
        if query.panel_type == "nodeGraph":
            continue  # two frames, no organize: the frame contract is checked below
        if query.target["format"] == "table":
            assert query.expected_columns, query.where


def test_node_graph_panel_has_a_nodes_and_an_edges_frame() -> None:
    graphs = {}
    for query in q.iter_queries("attribution.json", DOCS["attribution.json"]):
        if query.panel_type == "nodeGraph":
            graphs.setdefault(query.panel_id, {})[query.target["refId"]] = query.text
    assert len(graphs) == 1
    frames = next(iter(graphs.values()))
    assert set(frames) == {"nodes", "edges"}
    assert " AS source" in frames["edges"] and " AS target" in frames["edges"]
    assert " AS source" not in frames["nodes"]  # else Grafana would read the nodes as edges
    (panel,) = [p for p in DOCS["attribution.json"]["panels"] if p["type"] == "nodeGraph"]
    assert panel["title"] == "Hop graph (from the analysis)"
    assert panel["options"]["edges"] == {"mainStatUnit": "ms", "secondaryStatUnit": "ms"}
    assert {t["format"] for t in panel["targets"]} == {"table"}


def test_node_graph_frame_contract_rejects_what_grafana_would_misread() -> None:
    assert q.node_graph_frame_problems("nodes", ("id", "title", "subtitle", "detail__x", "arc__ok")) == []
    assert q.node_graph_frame_problems("edges", ("id", "source", "target", "mainstat", "secondarystat")) == []
    assert q.node_graph_frame_problems("edges", ("id", "source", "mainstat")) == [
        "edges frame lacks 'target'"
    ]
    assert q.node_graph_frame_problems("nodes", ("id", "source")) == [
        "nodes frame has a 'source' field: Grafana would read it as edges",
        "nodes frame column 'source' is no Node Graph field",
    ]
    assert q.node_graph_frame_problems("edges", ("id", "source", "target", "main_stat")) == [
        "edges frame column 'main_stat' is no Node Graph field"
    ]
    assert q.node_graph_frame_problems("edges", ("id", "source", "target", "arc__x")) == [
        "edges frame column 'arc__x' is no Node Graph field"
    ]
    assert q.node_graph_frame_problems("A", ("id",)) == ["refId 'A' is neither 'nodes' nor 'edges'"]


def test_readme_documents_import_with_tempo_and_jaeger() -> None:
    readme = (Path(build.HERE) / "README.md").read_text()
    for word in ("Tempo", "Jaeger", "provisioning", "hopscope dashboards publish", "not available"):
        assert word in readme


def test_jaeger_searches_are_logfmt_tags_on_a_service() -> None:
    doc = DOCS["traces.json"]
    jaeger = [x for x in q.iter_queries("traces.json", doc) if x.language == q.JAEGER]
    assert len(jaeger) == 2
    pair = re.compile(r'\s*([\w.]+)="([^"]*)"')
    for query in jaeger:
        tags = q.substitute(query.target["tags"], {"workload": "write_notify", "hop": "a.b"}, query.where)
        parsed = dict(pair.findall(tags))
        assert pair.sub("", tags).strip() == "", f"{query.where}: {tags!r} is not logfmt"
        assert parsed["hopscope.workload"] == "write_notify"
        assert query.target["service"].startswith("$") and query.target["service"][1:] in q.variables(doc)
        assert re.fullmatch(r"\$\w+", query.target["minDuration"])
    # The bounds offered are durations Jaeger and TraceQL both accept.
    for name in ("e2e_bound", "hop_bound"):
        for value in q.variables(doc)[name]["query"].split(","):
            assert re.fullmatch(r"\d+(ms|s)", value), value
