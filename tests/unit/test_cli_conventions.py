"""The command line's conventions: `--version`, `-h` as `--help` on every command."""

from __future__ import annotations

from importlib import metadata

import pytest
from typer.testing import CliRunner

from hopscope.cli import app

runner = CliRunner()


def test_version_prints_the_installed_packages_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"hopscope {metadata.version('hopscope')}"


@pytest.mark.parametrize("command", [[], ["analyze"], ["ingest"], ["bench"], ["run"], ["up"]])
def test_dash_h_is_help_everywhere(command: list[str]) -> None:
    short, long = runner.invoke(app, [*command, "-h"]), runner.invoke(app, [*command, "--help"])
    assert short.exit_code == long.exit_code == 0, short.output
    assert "Usage: hopscope" in short.output and short.output == long.output


@pytest.mark.parametrize("value", [-1e-9, -0.00049, 0.0, -0.0])
def test_a_share_that_rounds_to_zero_is_never_printed_negative(value: float) -> None:
    from hopscope.analysis.report.tables import fmt_share

    assert fmt_share(value) == "0.0 %"
