"""The OTLP bearer-token option as configuration (deploy/otlp_auth.py): off by default, the
collector config it renders, the token handed to child processes in the standard variable,
and a non-loopback listen address refused without it. The round trips are in
tests/integration/test_otlp_auth.py."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from hopscope.deploy import otlp_auth
from hopscope.deploy.base import Context
from hopscope.deploy.config import load_config
from hopscope.deploy.services.collector import Collector


def _ctx(tmp_path: Path, **collector: str) -> Context:
    env = {"HOPSCOPE_STATE_DIR": str(tmp_path / "state")}
    env.update({f"HOPSCOPE_COLLECTOR__{k.upper()}": v for k, v in collector.items()})
    return Context(load_config(environ=env))


def test_off_by_default_renders_no_authenticator_and_hands_down_nothing(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    conf = yaml.safe_load(Collector(ctx).render_config())
    assert "bearertokenauth" not in conf["extensions"]
    assert conf["service"]["extensions"] == ["health_check"]
    protocols = conf["receivers"]["otlp"]["protocols"]
    assert all("auth" not in p and p["endpoint"].startswith("127.0.0.1:") for p in protocols.values())
    environ: dict[str, str] = {}
    assert not otlp_auth.export_to_environment(ctx, environ) and environ == {}
    assert otlp_auth.headers(ctx) == {}


def test_bearer_guards_both_receivers_with_a_private_token_file(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, otlp_auth="bearer", otlp_listen="0.0.0.0")
    conf = yaml.safe_load(Collector(ctx).render_config())
    token_file = Path(conf["extensions"]["bearertokenauth"]["filename"])
    assert conf["service"]["extensions"] == ["health_check", "bearertokenauth"]
    for proto in conf["receivers"]["otlp"]["protocols"].values():
        assert proto["auth"] == {"authenticator": "bearertokenauth"}
        assert proto["endpoint"].startswith("0.0.0.0:")
    token = token_file.read_text()
    assert len(token) >= 20 and token_file.stat().st_mode & 0o777 == 0o600
    assert otlp_auth.headers(ctx) == {"authorization": f"Bearer {token}"}
    # the same token on the next call (kept in secrets.json), not a new one
    assert otlp_auth.token(ctx) == token


def test_the_token_reaches_children_url_encoded_and_a_users_header_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(otlp_auth.TOKEN_ENV, "from env/+=")
    ctx = _ctx(tmp_path, otlp_auth="bearer")
    environ: dict[str, str] = {}
    assert otlp_auth.export_to_environment(ctx, environ)
    key, _, value = environ[otlp_auth.HEADERS_ENV].partition("=")
    assert (key, unquote(value)) == ("authorization", "Bearer from env/+=")
    assert "," not in value and " " not in value  # the variable's own separators stay unambiguous
    mine = {otlp_auth.HEADERS_ENV: "authorization=Basic%20abc"}
    assert not otlp_auth.export_to_environment(ctx, mine)
    assert mine[otlp_auth.HEADERS_ENV] == "authorization=Basic%20abc"


def test_a_listen_address_beyond_loopback_needs_auth(tmp_path: Path) -> None:
    with pytest.raises(
        Exception, match=r'otlp_listen = "0.0.0.0" exposes the OTLP receivers beyond this host'
    ):
        _ctx(tmp_path, otlp_listen="0.0.0.0")
    assert _ctx(tmp_path, otlp_listen="::1").config.collector.otlp_auth == "none"
