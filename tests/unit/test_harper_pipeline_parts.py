"""The Harper driver's reading of the component's own span account."""

from __future__ import annotations

from hopscope.analysis.quality import span_source_problems
from hopscope.pipelines.harper.driver import summarize_component_telemetry


def _node(name: str, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "node": name,
        "spans_ended": 10,
        "spans_exported": 10,
        "spans_failed": 0,
        "spans_pending": 0,
        "last_error": None,
        "worker_restarted_during_run": False,
    }
    return {**base, **kw}


def test_clean_account_has_totals_and_no_problems() -> None:
    acc = summarize_component_telemetry([_node("n1"), _node("n2", spans_ended=0, spans_exported=0)])
    assert acc["spans_ended"] == 10 and acc["spans_exported"] == 10
    assert acc["problems"] == []


def test_every_kind_of_loss_is_named_with_its_node() -> None:
    acc = summarize_component_telemetry(
        [
            _node("n1", spans_exported=7, spans_failed=3, last_error="ECONNREFUSED"),
            _node("n2", commits_open=2, spans_pending=1),
            _node("n3", worker_restarted_during_run=True),
            {"node": "n4", "error": "POST http://x: ConnectError"},
        ]
    )
    assert acc["spans_failed"] == 3 and acc["commits_open"] == 2 and acc["spans_pending"] == 1
    text = "\n".join(acc["problems"])
    assert "n1: spans_failed=3 (last export error: ECONNREFUSED)" in text
    assert "n2: spans_pending=1, commits_open=2" in text
    assert "n3: the Harper worker restarted" in text
    assert "n4: telemetry not readable" in text
    assert len(acc["problems"]) == 4


def test_span_source_problems_found_once_wherever_the_manifest_keeps_them() -> None:
    account = summarize_component_telemetry([_node("n1", spans_failed=2, spans_exported=8)])
    manifest = {
        "phases": {"p01-harper-write_notify": {"component_telemetry": account}},
        "drivers": {"harper": {"component_telemetry": account}},  # the same account again
        "driver": {"component_telemetry": summarize_component_telemetry([_node("n2")])},
    }
    problems = span_source_problems(manifest)
    assert problems == ["phases.p01-harper-write_notify: n1: spans_failed=2"]
    assert span_source_problems({}) == []


def test_the_applied_confirmation_is_what_the_writes_reported() -> None:
    from collections import Counter

    from hopscope.pipelines.harper.driver import applied_confirmation

    assert applied_confirmation(Counter()) == {}  # no REST write (fanout): nothing to read back
    assert applied_confirmation(Counter({"1": 40})) == {"applied": 1, "applied_counts": {"1": 40}}
    mixed = applied_confirmation(Counter({"1": 38, "0": 2}))
    assert mixed["applied"] == "mixed: 1 ×38, 0 ×2" and mixed["applied_counts"] == {"1": 38, "0": 2}
    # an old component without the header is said so, never taken for a number
    assert applied_confirmation(Counter({"not reported": 3}))["applied"] == "not reported"


def test_subscribers_sit_on_the_replicas_only() -> None:
    """D21: node 1 takes the writes and tells no subscriber; they spread over nodes 2..n."""
    from hopscope.pipelines.harper.pipeline import fanned_subscribers
    from hopscope.pipelines.workload import load_workload

    workload = load_workload("write_notify", {"subscribers": 5})
    subs = fanned_subscribers(workload, 3, lambda _spec: ["Notify/#"])
    assert [s.node for s in subs] == [2, 3, 2, 3, 2]
    assert [s.node for s in fanned_subscribers(workload, 1, lambda _spec: [])] == [1] * 5  # one node: itself
