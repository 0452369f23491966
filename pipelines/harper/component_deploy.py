"""Deploy the hopscope Harper component to every node, only when it changed.

The component folder (`component/`) is staged together with the JS trace
helper (`instrumentation/js/`, copied to `lib/`) and a `settings.json` naming
the collector's OTLP/HTTP endpoint, hashed, and deployed with Harper's
`deploy_component` when the hash differs from the last deployed one (or the
component does not answer). Each node installs the pinned npm packages itself
(`npm install` from `package-lock.json`); node_modules is never shipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from hopscope.deploy.harper_client import HarperClient, HarperError

PROJECT = "hopscope"
COMPONENT_DIR = Path(__file__).resolve().parent / "component"
JS_HELPER_DIR = Path(__file__).resolve().parents[2] / "instrumentation" / "js"
#: REST path every node must answer once the component is loaded.
READY_PATH = "Notify/"
_SKIP = {"node_modules", ".git", "__pycache__"}


def stage(dest: Path, otlp_traces_url: str) -> Path:
    """Write the deployable folder into `dest` and return it."""
    for item in sorted(COMPONENT_DIR.iterdir()):
        if item.name in _SKIP or item.name.endswith(".md"):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name, ignore=shutil.ignore_patterns(*_SKIP))
        else:
            shutil.copy2(item, dest / item.name)
    (dest / "lib").mkdir(exist_ok=True)
    for js in sorted(JS_HELPER_DIR.glob("*.js")):
        shutil.copy2(js, dest / "lib" / js.name)
    (dest / "settings.json").write_text(json.dumps({"otlp_traces_url": otlp_traces_url}, indent=2) + "\n")
    return dest


def folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(folder)).encode() + b"\0" + item.read_bytes() + b"\0")
    return digest.hexdigest()


def component_answers(client: HarperClient) -> bool:
    try:
        with client.http(timeout=5) as http:
            return all(http.get(f"{node.rest_url}/{READY_PATH}").status_code < 404 for node in client.nodes)
    except httpx.HTTPError:
        return False


def ensure_component(
    client: HarperClient,
    state_file: Path,
    otlp_traces_url: str,
    *,
    force: bool = False,
    before_deploy: Callable[[], object] | None = None,
) -> str:
    """Deploy when changed; returns 'deployed' or 'unchanged'. Raises HarperError on failure.

    Holds a file lock next to `state_file`: two `up`s deploying at once made Harper's
    npm installs trip over each other.
    """
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with state_file.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(client, state_file, otlp_traces_url, force, before_deploy)


def _ensure_locked(
    client: HarperClient,
    state_file: Path,
    otlp_traces_url: str,
    force: bool,
    before_deploy: Callable[[], object] | None,
) -> str:
    with tempfile.TemporaryDirectory(prefix="hopscope-harper-component-") as tmp:
        folder = Path(tmp) / PROJECT
        folder.mkdir()
        stage(folder, otlp_traces_url)
        digest = folder_hash(folder)
        previous = state_file.read_text().strip() if state_file.is_file() else None
        if not force and previous == digest and component_answers(client):
            return "unchanged"
        if before_deploy is not None:
            before_deploy()
        try:
            client.deploy_component(folder, project=PROJECT, ready_path=READY_PATH, timeout=240.0)
        except HarperError as exc:
            raise HarperError(f"deploying the hopscope component from {COMPONENT_DIR}: {exc}") from exc
    state_file.write_text(digest + "\n")
    return "deployed"
