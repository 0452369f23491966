"""Debian packages: installed once, by name, with one `apt-get install` for all that are missing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable

from hopscope.deploy.base import DeployError


def missing(packages: Iterable[str]) -> list[str]:
    out = []
    for pkg in packages:
        probe = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False
        )
        if "install ok installed" not in probe.stdout:
            out.append(pkg)
    return out


def ensure(service: str, packages: Iterable[str]) -> None:
    """Install the Debian packages that are not there yet (needs root; apt-get update first)."""
    todo = missing(packages)
    if not todo:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Debian's maintainer scripts would start each daemon on its default port;
    # policy-rc.d exit 101 forbids that — hopscope starts its own instances.
    policy = "/usr/sbin/policy-rc.d"
    wrote_policy = not os.path.exists(policy)
    if wrote_policy:
        with open(policy, "w") as fh:
            fh.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *todo]):
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
                raise DeployError(service, "install", f"`{' '.join(argv)}` exited {proc.returncode}: {tail}")
    finally:
        if wrote_policy:
            os.unlink(policy)
