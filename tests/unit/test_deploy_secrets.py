"""Secret files are owner-only from the moment they exist (no services needed)."""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopscope.deploy import base
from hopscope.deploy.base import Context, write_private
from hopscope.deploy.config import load_config
from hopscope.deploy.services.kafka import Connect
from hopscope.deploy.services.redis import Redis


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The widest umask: whatever mode a file gets, it gets from its creator alone."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def creation_modes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The mode of every file `base` creates, read from the inode right after `os.open`
    returns — before a byte is written, so a write-then-chmod would show up here."""
    seen: list[tuple[str, int]] = []
    real_open = os.open

    def spying_open(path: os.PathLike[str] | str, flags: int, mode: int = 0o777, **kw: object) -> int:
        fd = real_open(path, flags, mode, **kw)  # type: ignore[arg-type]
        if flags & os.O_CREAT:
            seen.append((str(path), stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(base.os, "open", spying_open)
    return seen


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_write_private_creates_0600_before_the_first_byte(
    tmp_path: Path, creation_modes: list[tuple[str, int]]
) -> None:
    target = tmp_path / "secret.txt"
    write_private(target, "one")
    assert target.read_text() == "one"
    assert _mode(target) == 0o600
    # replacing a file that someone made world-readable does not keep its mode
    target.chmod(0o644)
    write_private(target, "two")
    assert (target.read_text(), _mode(target)) == ("two", 0o600)
    assert creation_modes and all(mode == 0o600 for _, mode in creation_modes), creation_modes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.txt"]  # no temporary file left


@pytest.mark.usefixtures("open_umask")
def test_write_private_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    target = tmp_path / "secret.txt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    tmp = tmp_path / f".secret.txt.{os.getpid()}.tmp"
    tmp.symlink_to(elsewhere)
    write_private(target, "s3cret")
    assert elsewhere.read_text() == "untouched"
    assert (target.read_text(), _mode(target)) == ("s3cret", 0o600)


@pytest.mark.usefixtures("open_umask")
def test_generated_secrets_connect_secrets_and_redis_conf_are_0600(
    tmp_path: Path, creation_modes: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = Context(load_config(environ={"HOPSCOPE_STATE_DIR": str(tmp_path)}))
    password = ctx.secret("postgres_password")
    assert ctx.secret("postgres_password") == password  # kept, not regenerated
    ctx.secret("redis_password")
    assert _mode(tmp_path / "secrets.json") == 0o600

    ref = Connect(ctx).secret_ref("slot.password", password)
    props = tmp_path / "connect" / "secrets.properties"
    assert ref == "${file:" + str(props) + ":slot.password}"
    assert _mode(props) == 0o600

    # redis.conf holds requirepass (start without spawning the server)
    monkeypatch.setattr(Redis, "spawn", lambda self, *a, **kw: 0)
    Redis(ctx).start()
    conf = tmp_path / "redis" / "redis.conf"
    assert "requirepass " in conf.read_text()
    assert _mode(conf) == 0o600

    created = {Path(name).name.split(".")[1] for name, _ in creation_modes}
    assert {"secrets", "redis"} <= created, created
    assert all(mode == 0o600 for _, mode in creation_modes), creation_modes


@pytest.mark.usefixtures("open_umask")
def test_write_private_hands_the_file_to_its_owner(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    target = tmp_path / "pwfile"
    write_private(target, "pw\n", owner=me)
    info = target.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.getuid(), 0o600)
