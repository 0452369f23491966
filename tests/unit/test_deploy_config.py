"""Configuration and lifecycle errors, on our own interfaces (no services)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

from hopscope.deploy.base import Context, DeployError, Service
from hopscope.deploy.config import ConfigError, load_config
from hopscope.deploy.lifecycle import _up_one
from hopscope.deploy.registry import UnknownService, resolve


def test_defaults_avoid_system_ports() -> None:
    cfg = load_config(environ={})
    used = {cfg.postgres.port, cfg.redis.port, *cfg.kafka.broker_ports, cfg.prometheus.port}
    assert not used & {5432, 6379, 9092, 9090, 4317, 4318, 16686}


def test_env_and_file_override(tmp_path: Path) -> None:
    conf = tmp_path / "h.toml"
    conf.write_text('[kafka]\nexternal_bootstrap = "k1:9092,k2:9092"\n[redis]\nport = 7000\n')
    cfg = load_config(conf, environ={"HOPSCOPE_REDIS__PORT": "7001", "HOPSCOPE_STATE_DIR": str(tmp_path)})
    assert cfg.kafka.bootstrap == "k1:9092,k2:9092"
    assert cfg.redis.port == 7001  # the environment wins over the file
    assert cfg.state_dir == tmp_path


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[redis]\nport = "not-a-port"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*redis\.port"):
        load_config(conf, environ={})
    conf.write_text("[kafka]\nbrokers = 3\n")
    with pytest.raises(ConfigError, match=r"kafka\.brokers"):
        load_config(conf, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


def test_only_adds_dependencies_and_rejects_unknown() -> None:
    assert resolve("prometheus")[-1] == "prometheus"
    with pytest.raises(UnknownService, match="known:"):
        resolve("postgress")


class _ExitsAtOnce(Service):
    """A service of our own whose process dies during start-up."""

    name = "exits"
    start_timeout = 5.0

    def is_external(self) -> bool:
        return False

    def endpoint(self) -> str:
        return "nowhere"

    def is_installed(self) -> bool:
        return True

    def install(self) -> None:
        pass

    def start(self) -> None:
        self.spawn("exits", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])

    def health(self) -> None:
        raise self.fail("health", "no answer on nowhere")


def test_start_failure_names_service_step_and_log(tmp_path: Path) -> None:
    ctx = Context(load_config(environ={"HOPSCOPE_STATE_DIR": str(tmp_path)}))
    with pytest.raises(DeployError) as err:
        _up_one(_ExitsAtOnce(ctx), Console(quiet=True))
    message = str(err.value)
    assert message.startswith("exits: start failed")
    assert str(tmp_path / "exits" / "exits.log") in message
    assert "boom" in (tmp_path / "exits" / "exits.log").read_text()
