"""The mapping file: rules rename and merge hops, name workloads and stacks, report what they
did not match; an unusable file is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hopscope.analysis.mapping import MappingError, load_mapping
from hopscope.analysis.run import Run
from hopscope.cli import app
from hopscope.core.schema import SPAN_PARQUET_OPTIONS
from hopscope.synth import foreign as fs

MAPPING = """\
rules:
  - match: {name: "^orders process$", kind: consumer}
    hop: orders consumer
  - match: {attributes: {db.system.name: "^redis$"}}
    hop: cart cache
  - match: {service: "^checkout$", name: "^POST "}
    workload: checkout
    stack: shop
  - match: {service: "^shipping$"}
    hop: never
"""


@pytest.fixture(scope="module")
def synth() -> fs.ForeignSynth:
    return fs.foreign_run(events=500, seed=3)


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    p = tmp_path / "mapping.yaml"
    p.write_text(MAPPING)
    return p


def test_rules_rename_and_merge_hops(synth: fs.ForeignSynth, mapping_file: Path) -> None:
    run = Run.from_table(synth.table, label="ignored", mapping=load_mapping(mapping_file))
    hs = run.hop_stats().set_index("hop")
    assert set(hs["stack"]) == {"shop"} and set(hs["workload"]) == {"checkout"}
    assert "cart cache" in hs.index and fs.CACHE not in hs.index
    assert fs.ACCOUNTING not in hs.index and fs.FRAUD not in hs.index
    truth = pd.DataFrame(synth.truth)
    # both consumers' process hops are one hop now: every delivery holds it
    merged = np.concatenate([truth[fs.ACCOUNTING].dropna(), truth[fs.FRAUD].dropna()]) / 1e6
    assert hs.loc["orders consumer", "count"] == len(truth)
    assert hs.loc["orders consumer", "p50_ms"] == pytest.approx(np.quantile(merged, 0.5), rel=1e-9)
    assert hs.loc["cart cache", "p99_ms"] == pytest.approx(np.quantile(truth[fs.CACHE] / 1e6, 0.99), rel=1e-9)
    # the wait before a merged hop is named after it
    assert "wait:orders consumer" in hs.index
    info = run.foreign
    assert info is not None
    assert info.rule_spans[:3] == [2 * len(truth) // 2, len(truth) // 2, len(truth) // 2]
    assert len(info.unmatched_rules) == 1 and "rule 4" in info.unmatched_rules[0]


def _cli(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_cli_reports_the_unmatched_rule_and_prints_the_mapping(
    synth: fs.ForeignSynth, mapping_file: Path, tmp_path: Path
) -> None:
    rd = tmp_path / "r"
    rd.mkdir()
    pq.write_table(synth.table, rd / "spans.parquet", **SPAN_PARQUET_OPTIONS)
    res = _cli(["analyze", str(rd), "--mapping", str(mapping_file), "--label", "webshop"])
    assert res.exit_code == 0, res.output
    assert "mapping rule 4" in res.output and "matched no span" in res.output
    md = (rd / "report.md").read_text()
    assert md.startswith("# hopscope report — shop: checkout")  # the mapping's stack wins over --label
    assert str(mapping_file) in md and "MATCHED NOTHING" in md
    assert list(rd.glob("graph-shop-checkout.graphml"))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("rules:\n  - match: {name: '('}\n    hop: x\n", "rules[0].match.name: bad regex"),
        ("rules:\n  - match: {nme: a}\n    hop: x\n", "rules[0].match.nme: Extra inputs"),
        ("rules:\n  - match: {name: a}\n", "rules[0]: sets nothing"),
        ("rules:\n  - match: {}\n    hop: x\n", "rules[0].match: matches every span"),
        ("rules:\n  - match: {kind: sideways}\n    hop: x\n", "rules[0].match.kind: 'sideways'"),
        ("rules:\n  - match: {name: a}\n    hop: ' '\n", "rules[0]: hop: an empty name"),
        ("- just a list\n", "expected a mapping"),
        ("rules: [\n", "not YAML"),
    ],
)
def test_bad_mapping_is_one_line(tmp_path: Path, text: str, where: str) -> None:
    p = tmp_path / "m.yaml"
    p.write_text(text)
    with pytest.raises(MappingError) as exc:
        load_mapping(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: ") and where in msg and "\n" not in msg


def test_cli_bad_mapping_exits_2_before_analysing(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text("rules:\n  - match: {name: '('}\n    hop: x\n")
    rd = tmp_path / "r"
    rd.mkdir()
    res = _cli(["analyze", str(rd), "--mapping", str(p)])
    assert res.exit_code == 2
    assert "rules[0].match.name: bad regex" in res.output


def test_the_readme_example_mapping_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "analysis" / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    p = tmp_path / "readme.yaml"
    p.write_text(block)
    assert len(load_mapping(p).rules) == 4
