"""The report, built on an in-memory fake of our own analysed-run interface whose hop
latencies are drawn here, so every expected number is computed from the raw samples."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from hopscope.analysis.report import (
    REPORT_SECTIONS,
    ReportContext,
    Section,
    headline,
    render_html,
    render_markdown,
    write_report,
)
from hopscope.analysis.report.outline import build_sections
from hopscope.analysis.report.sections import quality_section
from hopscope.analysis.report.tables import fmt_ms

# -- the fake run ------------------------------------------------------------------------


def _q(v: np.ndarray, p: float) -> float:
    return float(np.quantile(v, p))


@dataclass
class FakeRun:
    """Implements the analysis core's interface from per-event hop samples."""

    samples: dict[tuple[str, str], dict[str, np.ndarray]]
    expected: dict[str, dict[str, list[str]]]
    unattributed: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def pairs(self) -> list[tuple[str, str]]:
        return list(self.samples)

    def expected_hops(self, stack: str, workload: str) -> list[str]:
        return self.expected.get(stack, {}).get(workload, [])

    def _e2e(self, key: tuple[str, str]) -> np.ndarray:
        return np.sum(list(self.samples[key].values()), axis=0)

    def hop_stats(self) -> pd.DataFrame:
        rows = []
        for (stack, workload), hops in self.samples.items():
            e2e = self._e2e((stack, workload))
            tails = {p: e2e > _q(e2e, p) for p in (0.99, 0.999)}
            for order, (hop, v) in enumerate(hops.items(), start=1):
                share = {p: (v[m].mean() - v.mean()) / (e2e[m].mean() - e2e.mean()) for p, m in tails.items()}
                rows.append(
                    dict(
                        stack=stack, workload=workload, hop=hop, order=order, count=len(v),
                        mean_ms=v.mean(), std_ms=v.std(), p50_ms=_q(v, 0.5), p90_ms=_q(v, 0.9),
                        p99_ms=_q(v, 0.99), p999_ms=_q(v, 0.999), max_ms=v.max(),
                        var_share=np.cov(v, e2e)[0, 1] / e2e.var(ddof=1),
                        tail_share_p99=share[0.99], tail_share_p999=share[0.999],
                        crit_share=v.mean() / e2e.mean(),
                    )
                )  # fmt: skip
        return pd.DataFrame(rows)

    def e2e(self) -> pd.DataFrame:
        frames = []
        for key in self.samples:
            e2e = self._e2e(key)
            f = pd.DataFrame(
                dict(
                    stack=key[0], workload=key[1], event_id=[f"e{i}" for i in range(len(e2e))],
                    subscriber="s1", trace_id=[f"{i:032x}" for i in range(len(e2e))], e2e_ms=e2e,
                )
            )  # fmt: skip
            if self.unattributed:
                un = self.unattributed[key]
                f["ledger_e2e_ms"] = e2e + un
                f["unattributed_ms"] = un
            frames.append(f)
        return pd.concat(frames, ignore_index=True)

    def tail_growth(self) -> pd.DataFrame:
        rows = []
        for (stack, workload), hops in self.samples.items():
            partial = np.cumsum(list(hops.values()), axis=0)
            for i, hop in enumerate(hops):
                v = partial[i]
                rows.append(
                    dict(stack=stack, workload=workload, hop=hop, order=i + 1, p50_ms=_q(v, 0.5),
                         p99_ms=_q(v, 0.99), p999_ms=_q(v, 0.999))
                )  # fmt: skip
        return pd.DataFrame(rows)

    def graph(self, stack: str, workload: str) -> nx.DiGraph:
        if (stack, workload) not in self.samples:
            raise KeyError((stack, workload))
        stats = self.hop_stats()
        stats = stats[(stats["stack"] == stack) & (stats["workload"] == workload)]
        g = nx.DiGraph()
        prev = "client.send"
        for _, r in stats.iterrows():
            node = f"{r['hop']}.done"
            g.add_edge(prev, node, hop=r["hop"], mean_ms=r.mean_ms, p50_ms=r.p50_ms, p99_ms=r.p99_ms,
                       var_share=r.var_share, tail_share_p99=r.tail_share_p99, count=r["count"])  # fmt: skip
            prev = node
        return g

    def quality(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                dict(stack=s, workload=w, traces=len(self._e2e((s, w))), complete_traces=len(self._e2e((s, w))),
                     orphan_spans=0, duplicate_span_ids=0, negative_durations=0, missing_expected_hops=0,
                     malformed_records=3 if s == "kafka" else 0, clock_skew_corrections=0)
                for s, w in self.samples
            ]
        )  # fmt: skip


KAFKA_HOPS = ["pg.commit", "cdc.poll", "kafka.broker", "notifier", "redis.pubsub"]
HARPER_HOPS = ["rest.put", "replicate", "mqtt.deliver"]
N = 4000


def _kafka(rng: np.random.Generator, tail_hop: str, base: float) -> dict[str, np.ndarray]:
    hops = {h: rng.gamma(4.0, base / 4, N) for h in KAFKA_HOPS}
    # One hop in 3 % of the events stalls for tens of ms: that hop is where the tail opens.
    stall = rng.random(N) < 0.03
    hops[tail_hop] = hops[tail_hop] + stall * rng.uniform(40, 80, N)
    return hops


def _harper(rng: np.random.Generator, base: float) -> dict[str, np.ndarray]:
    return {h: rng.gamma(6.0, base / 6, N) for h in HARPER_HOPS}


@pytest.fixture(scope="module")
def fake() -> FakeRun:
    rng = np.random.default_rng(7)
    samples = {
        # harper lower everywhere
        ("kafka", "write_notify"): _kafka(rng, "cdc.poll", 2.0),
        ("harper", "write_notify"): _harper(rng, 1.5),
        # kafka lower at the median, harper lower at p99 (kafka's broker hop stalls)
        ("kafka", "fanout"): _kafka(rng, "kafka.broker", 0.3),
        ("harper", "fanout"): _harper(rng, 2.0),
        # only harper ran
        ("harper", "aggregate"): _harper(rng, 1.0),
    }
    expected = {
        "kafka": {w: KAFKA_HOPS for w in ("write_notify", "fanout", "aggregate")},
        "harper": {w: HARPER_HOPS for w in ("write_notify", "fanout", "aggregate", "ingest")},
    }
    unattributed = {
        key: (0.10 if key == ("kafka", "write_notify") else 0.01) * np.sum(list(h.values()), axis=0)
        for key, h in samples.items()
    }
    return FakeRun(samples, expected, unattributed)


@pytest.fixture(scope="module")
def ctx(fake: FakeRun) -> ReportContext:
    return ReportContext.from_run(fake, expected=fake.expected, meta={"run": "fake"})


@pytest.fixture(scope="module")
def sections(ctx: ReportContext) -> list[Section]:
    return build_sections(ctx)


@pytest.fixture(scope="module")
def page(ctx: ReportContext, sections: list[Section]) -> str:
    return render_html(ctx, sections)


# -- headline ------------------------------------------------------------------------------


def _e2e(fake: FakeRun, stack: str, workload: str) -> np.ndarray:
    return np.sum(list(fake.samples[(stack, workload)].values()), axis=0)


@pytest.mark.parametrize("workload", ["write_notify", "fanout"])
def test_headline_lower_stack_and_ratio_match_the_samples(
    fake: FakeRun, ctx: ReportContext, workload: str
) -> None:
    k, h = _e2e(fake, "kafka", workload), _e2e(fake, "harper", workload)
    line = headline(ctx, workload)
    for p, lower, ratio in ((0.5, line.lower_p50, line.ratio_p50), (0.99, line.lower_p99, line.ratio_p99)):
        qk, qh = _q(k, p), _q(h, p)
        assert lower == ("kafka" if qk < qh else "harper")
        assert ratio == pytest.approx(max(qk, qh) / min(qk, qh), rel=1e-9)
        assert ratio > 1
    by_stack = {s.stack: s for s in line.stacks}
    assert by_stack["kafka"].p999_ms == pytest.approx(_q(k, 0.999))
    assert line.losing_stack == ("kafka" if _q(k, 0.99) > _q(h, 0.99) else "harper")


def test_the_two_workloads_really_differ_in_who_wins(ctx: ReportContext) -> None:
    # Guards the fixture: fanout must exercise a split verdict, write_notify a clean one.
    wn, fo = headline(ctx, "write_notify"), headline(ctx, "fanout")
    assert (wn.lower_p50, wn.lower_p99) == ("harper", "harper")
    assert (fo.lower_p50, fo.lower_p99) == ("kafka", "harper")


@pytest.mark.parametrize(("workload", "stalled"), [("write_notify", "cdc.poll"), ("fanout", "kafka.broker")])
def test_tail_opens_at_the_stalled_hop(ctx: ReportContext, workload: str, stalled: str) -> None:
    line = headline(ctx, workload)
    assert line.losing_stack == "kafka"
    assert line.tail_hop == stalled
    assert line.growth_hop == stalled
    # A single hop's share may exceed 1 when the others shrink in the tail; it is the largest share.
    stats = ctx.hops("kafka", workload)
    assert line.tail_hop_share == pytest.approx(stats["tail_share_p99"].max())
    assert line.tail_hop_share > 0.5


def test_single_stack_workload_has_no_verdict_but_names_the_missing_stack(ctx: ReportContext) -> None:
    line = headline(ctx, "aggregate")
    assert [s.stack for s in line.stacks] == ["harper"]
    assert line.missing == ["kafka"]
    assert line.lower_p50 is None and line.ratio_p99 is None


def test_headline_table_in_html_and_markdown_shows_the_ratio(
    fake: FakeRun, ctx: ReportContext, sections: list[Section]
) -> None:
    k, h = _e2e(fake, "kafka", "write_notify"), _e2e(fake, "harper", "write_notify")
    ratio = f"×{_q(k, 0.99) / _q(h, 0.99):.2f} ["
    head = next(s for s in sections if s.anchor == "headline")
    row = next(line for line in head.markdown.splitlines() if line.startswith("| write_notify"))
    assert f"harper lower, {ratio}" in row
    assert "kafka: cdc.poll" in row
    assert f"harper lower, {ratio}" in head.html
    # each stack's figure comes with its interval and its sample count; the figure is named
    assert f"| {len(k):,} | {fmt_ms(_q(k, 0.5))} [" in row
    assert "trace e2e" in head.markdown  # the fake run has no ledger


# -- structure --------------------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, name, value))
            if name == "id" and value is not None:
                self.ids.append(value)


def _workload_html(page: str, workload: str) -> str:
    start = page.index(f'<section class="top" id="workload-{workload.replace("_", "-")}"')
    end = page.find('<section class="top"', start + 10)
    return page[start : end if end > 0 else None]


def test_html_is_self_contained(page: str) -> None:
    parser = _Collector()
    parser.feed(page)
    # Every link is an in-page anchor; nothing (script, stylesheet, image) is fetched.
    assert parser.refs, "the table of contents has links"
    assert all(value.startswith("#") for _, _, value in parser.refs), parser.refs
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?https?:", page, re.I)
    # plotly.js is inlined exactly once, however many plots there are.
    assert page.count("Plotly.newPlot(") >= 10
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()[:200]) == 1


def test_every_anchor_in_the_toc_exists(page: str) -> None:
    parser = _Collector()
    parser.feed(page)
    ids = set(parser.ids)
    missing = [v for _, _, v in parser.refs if v[1:] not in ids]
    assert not missing


@pytest.mark.parametrize("workload", ["write_notify", "fanout"])
def test_each_workload_section_has_both_stacks_data(page: str, fake: FakeRun, workload: str) -> None:
    body = _workload_html(page, workload)
    # One plot each: CDF, breakdown, growth, shares, and a hop graph per stack.
    assert body.count("Plotly.newPlot(") == 6
    for hop in KAFKA_HOPS + HARPER_HOPS:
        assert f"<td>{hop}</td>" in body
    for stack in ("kafka", "harper"):
        assert f"{stack} · {workload}" in body
        assert f"{stack} (n={N:,})" in body  # the CDF legend entry
    assert "No data for stack" not in body


def test_absent_stack_is_stated_not_omitted(page: str, ctx: ReportContext, sections: list[Section]) -> None:
    body = _workload_html(page, "aggregate")
    assert "No data for stack kafka in aggregate: expected hops pg.commit" in body
    assert "No hop graph for kafka in aggregate." in body
    assert "kafka: no per-hop statistics in aggregate." in body
    assert body.count("Plotly.newPlot(") == 5  # harper's four plots and its hop graph
    # `ingest` is only in the manifest (harper): a section saying nothing ran.
    body = _workload_html(page, "ingest")
    assert "No stack delivered any event in this workload." in body
    assert "Plotly.newPlot(" not in body
    md = render_markdown(ctx, sections)
    assert "> No data for stack kafka in aggregate" in md
    assert "> No data for stack kafka in ingest: the stack was not run for this workload." in md


def test_sections_follow_the_workloads_in_manifest_order(sections: list[Section]) -> None:
    assert [s.anchor for s in sections] == [
        "headline", "workload-write-notify", "workload-fanout", "workload-aggregate", "workload-ingest",
        "quality",
    ]  # fmt: skip


def test_hop_tables_list_hops_in_path_order(sections: list[Section]) -> None:
    wn = next(s for s in sections if s.anchor == "workload-write-notify")
    hops = next(c for c in wn.children if c.title == "Per-hop statistics").markdown
    positions = [hops.index(f"| {h} |") for h in KAFKA_HOPS]
    assert positions == sorted(positions)


# -- quality and closure -----------------------------------------------------------------------


def test_closure_flags_only_the_pair_above_five_percent(sections: list[Section]) -> None:
    quality = next(s for s in sections if s.anchor == "quality").markdown
    closure = quality.split("### Hop closure", 1)[1]
    rows = {
        tuple(c.strip() for c in line.split("|")[1:3]): line
        for line in closure.splitlines()
        if line.startswith("| ")
    }
    assert "unattributed > 5 % of e2e" in rows[("kafka", "write_notify")]
    # unattributed = 10 % (1 %) of the trace e2e, so 10/110 (1/101) of the ledger e2e
    assert f"{100 * 0.10 / 1.10:.1f} %" in rows[("kafka", "write_notify")]
    for key in (("harper", "write_notify"), ("kafka", "fanout"), ("harper", "aggregate")):
        assert rows[key].rstrip(" |").endswith("ok")
        assert f"{100 * 0.01 / 1.01:.1f} %" in rows[key]


def test_quality_problems_are_highlighted(page: str) -> None:
    start = page.index('id="quality"')
    table = page[start : page.index("</table>", start)]
    assert table.count('class="num flag">3</td>') == 2  # kafka's malformed records, two workloads
    row = table[table.index("<td>malformed records</td>") :].split("</tr>", 1)[0]
    assert row.count("flag") == 2 and row.count('class="num">0</td>') == 3


def test_no_ledger_means_closure_is_said_to_be_unmeasured(fake: FakeRun) -> None:
    bare = FakeRun(fake.samples, fake.expected)
    ctx = ReportContext.from_run(bare, expected=bare.expected)
    quality = next(s for s in build_sections(ctx, [quality_section]) if s.anchor == "quality")
    assert "No ledger in this run" in quality.html


# -- extension and files ------------------------------------------------------------------------


def test_a_new_section_plugs_in_by_list(ctx: ReportContext, tmp_path: Path) -> None:
    def fairness(c: ReportContext):
        yield Section("fairness", "Fairness controls", "<p>acks=all</p>", "acks=all\n")

    # The headline and quality sections stand in for the whole list (the plots are slow to build).
    files = write_report(ctx, tmp_path, [REPORT_SECTIONS[0], REPORT_SECTIONS[-1], fairness])
    page = files.html.read_text()
    assert '<a href="#fairness">Fairness controls</a>' in page
    assert '<section class="top" id="fairness">' in page
    md = files.markdown.read_text()
    assert "## Fairness controls" in md and "acks=all" in md
    assert md.index("## Headline") < md.index("## Fairness controls")


def test_run_without_any_data_still_renders(tmp_path: Path) -> None:
    empty = FakeRun({}, {"kafka": {"write_notify": KAFKA_HOPS}})
    empty.hop_stats = lambda: pd.DataFrame()  # type: ignore[method-assign]
    empty.e2e = lambda: pd.DataFrame(columns=["stack", "workload", "e2e_ms"])  # type: ignore[method-assign]
    empty.tail_growth = lambda: pd.DataFrame()  # type: ignore[method-assign]
    empty.quality = lambda: pd.DataFrame()  # type: ignore[method-assign]
    ctx = ReportContext.from_run(empty, expected=empty.expected)
    files = write_report(ctx, tmp_path)
    page = files.html.read_text()
    assert "No stack delivered any event in this workload." in page
    assert "No data for stack kafka in write_notify" in page
    assert "Plotly.newPlot(" not in page


def test_quality_problems_list_what_strict_would_fail_on(ctx: ReportContext) -> None:
    from hopscope.analysis.report.sections import quality_problems

    problems = quality_problems(ctx)
    # kafka's malformed records (both its workloads) and the one pair whose closure is off.
    assert sorted(problems) == sorted(
        [
            "kafka/write_notify: malformed_records = 3",
            "kafka/fanout: malformed_records = 3",
            f"kafka/write_notify: unattributed time is {100 * 0.10 / 1.10:.1f} % of e2e at p50",
        ]
    )
