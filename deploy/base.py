"""What every service on one host has in common: install once, start by PID, check, stop.

A service module subclasses `Service` and fills in `install`, `start` and
`health`. Everything about processes (PID files, log files, process groups,
taken ports, RSS) lives here so the service modules stay about their service.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import psutil

if TYPE_CHECKING:
    from hopscope.deploy.config import HopscopeConfig


class DeployError(RuntimeError):
    """A service could not be installed, started or checked.

    The message always names the service, the step that failed and where its
    log is, so the user knows where to look next.
    """

    def __init__(self, service: str, step: str, problem: str, log: Path | None = None) -> None:
        self.service, self.step, self.problem, self.log = service, step, problem, log
        where = f" (log: {log})" if log else ""
        super().__init__(f"{service}: {step} failed: {problem}{where}")


class PortInUse(DeployError):
    """A port the service needs is already taken by another process."""


@dataclass
class Context:
    """Where things go on this host, and the configuration."""

    config: HopscopeConfig

    @property
    def cache_dir(self) -> Path:
        return self.config.cache_dir

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def service_dir(self, service: str) -> Path:
        path = self.state_dir / service
        path.mkdir(parents=True, exist_ok=True)
        return path

    def install_dir(self, service: str, version: str) -> Path:
        return self.cache_dir / service / version

    def log_path(self, service: str, proc: str) -> Path:
        return self.service_dir(service) / f"{proc}.log"

    def secret(self, name: str) -> str:
        """A generated credential, created on first use and kept (mode 0600) in the state dir."""
        path = self.state_dir / "secrets.json"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if name not in data:
            data[name] = secrets.token_urlsafe(18)
            write_private(path, json.dumps(data, indent=2))
        return data[name]


@dataclass
class ProcessInfo:
    name: str
    pid: int | None
    alive: bool
    rss_bytes: int


@dataclass
class ServiceStatus:
    service: str
    state: str  # running | stopped | degraded | external | not-installed
    endpoint: str
    processes: list[ProcessInfo] = field(default_factory=list)
    detail: str = ""

    @property
    def rss_bytes(self) -> int:
        return sum(p.rss_bytes for p in self.processes)


class Service(ABC):
    """One service on this host (or a pointer to an external one)."""

    name: ClassVar[str]
    depends_on: ClassVar[tuple[str, ...]] = ()
    #: Seconds `up` waits for the health check after starting.
    start_timeout: ClassVar[float] = 60.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- what each service fills in -------------------------------------------------
    @abstractmethod
    def is_external(self) -> bool:
        """True when the config points at an existing service that we must not start."""

    @abstractmethod
    def endpoint(self) -> str:
        """The address clients use (never contains a password)."""

    @abstractmethod
    def is_installed(self) -> bool: ...

    @abstractmethod
    def install(self) -> None:
        """Fetch and unpack into the cache; must be a no-op when `is_installed()`."""

    @abstractmethod
    def start(self) -> None:
        """Spawn the processes (via `self.spawn`) and return without waiting for health."""

    @abstractmethod
    def health(self) -> None:
        """One real round trip; raise DeployError (step 'health') naming what failed."""

    def ports(self) -> Sequence[int]:
        """Local ports this service listens on, checked before start."""
        return ()

    def stop(self) -> None:
        """Stop every process recorded at start (reverse order)."""
        for pidfile in sorted(self.ctx.service_dir(self.name).glob("*.pid"), reverse=True):
            terminate_pidfile(pidfile)

    # --- shared process handling ---------------------------------------------------
    def pidfiles(self) -> list[Path]:
        return sorted(self.ctx.service_dir(self.name).glob("*.pid"))

    def spawn(
        self,
        proc: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        """Start one process in its own session, log to `<state>/<service>/<proc>.log`, record its PID."""
        log = self.ctx.log_path(self.name, proc)
        full_env = {**os.environ, **(env or {})}
        cmd = list(argv)
        if user is not None:
            # setpriv execs in place (runuser would fork), so the PID we record is the server's own.
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *cmd]
        with log.open("ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                start_new_session=True,  # own process group: `down` can end its children too
            )
        (self.ctx.service_dir(self.name) / f"{proc}.pid").write_text(str(popen.pid))
        return popen.pid

    def processes(self) -> list[ProcessInfo]:
        infos = []
        for pidfile in self.pidfiles():
            pid = read_pid(pidfile)
            alive = pid is not None and pid_alive(pid)
            infos.append(ProcessInfo(pidfile.stem, pid, alive, tree_rss(pid) if alive and pid else 0))
        return infos

    def running(self) -> bool:
        procs = self.processes()
        return bool(procs) and all(p.alive for p in procs)

    def check_ports_free(self) -> None:
        for port in self.ports():
            owner = port_owner(port)
            if owner is not None:
                raise PortInUse(
                    self.name,
                    "start",
                    f"port 127.0.0.1:{port} is already in use by {owner}; "
                    f"stop it or choose another port in the [{self.name}] config section",
                )

    def main_log(self) -> Path:
        logs = sorted(self.ctx.service_dir(self.name).glob("*.log"))
        return logs[0] if logs else self.ctx.log_path(self.name, self.name)

    def fail(self, step: str, problem: str) -> DeployError:
        return DeployError(self.name, step, problem, self.main_log())

    def status(self) -> ServiceStatus:
        if self.is_external():
            return ServiceStatus(self.name, "external", self.endpoint())
        procs = self.processes()
        if not self.is_installed():
            state = "not-installed"
        elif not procs:
            state = "stopped"
        elif all(p.alive for p in procs):
            state = "running"
        elif any(p.alive for p in procs):
            state = "degraded"
        else:
            state = "stopped"
        detail = ", ".join(f"{p.name} exited" for p in procs if not p.alive) if state == "degraded" else ""
        return ServiceStatus(self.name, state, self.endpoint(), procs, detail)


# --- helpers used by service modules -------------------------------------------------


def write_private(path: Path, text: str, *, owner: str | None = None) -> None:
    """Replace `path` with `text`, readable by its owner only from the first byte on.

    Writing a file and chmod-ing it after leaves a window in which any local user can open
    it (and keep the descriptor); so the temporary file is created 0600 by `os.open` itself,
    filled, handed to `owner` (a user name, e.g. `postgres`), and renamed over `path`:
    a reader sees the old file or the whole new one, never a wider one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crashed writer; O_EXCL below refuses to reuse it
    # O_EXCL | O_NOFOLLOW: never write through a link someone planted at the temporary name.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        # A umask can only narrow the mode given to open; fchmod pins it at exactly 0600.
        os.fchmod(fd, 0o600)
        if owner is not None:
            import pwd

            entry = pwd.getpwnam(owner)
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1  # the file object owns it now
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree_rss(pid: int) -> int:
    """RSS of a process and its children (runuser and shell wrappers have the real work below)."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total
    except psutil.Error:
        return 0


def terminate_pidfile(pidfile: Path, timeout: float = 20.0) -> None:
    """SIGTERM the recorded process group, wait, then SIGKILL what is left; remove the PID file."""
    pid = read_pid(pidfile)
    if pid is not None and pid_alive(pid):
        procs = _group(pid)
        for sig_target in procs:
            with contextlib.suppress(psutil.Error):
                sig_target.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
    pidfile.unlink(missing_ok=True)


def _group(pid: int) -> list[psutil.Process]:
    """The process, its descendants, and anything else in its process group."""
    procs: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        procs[pid] = root
        for child in root.children(recursive=True):
            procs[child.pid] = child
    with contextlib.suppress(OSError):
        pgid = os.getpgid(pid)
        for proc in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if os.getpgid(proc.pid) == pgid:
                    procs[proc.pid] = proc
    return list(procs.values())


def port_owner(port: int, host: str = "127.0.0.1") -> str | None:
    """Who listens on the port (a description), or None when it is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return None
        except OSError:
            pass
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    with contextlib.suppress(psutil.Error):
                        return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return "another process"
    return "another process"


def wait_until(
    check: Callable[[], None],
    *,
    timeout: float,
    interval: float = 0.5,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Retry `check` until it stops raising; re-raise its last error after `timeout`.

    `alive` lets a caller stop early when the process it waits for has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception:
            if time.monotonic() >= deadline or (alive is not None and not alive()):
                raise
        time.sleep(interval)


def run_checked(service: str, step: str, argv: Sequence[str], log: Path | None = None, **kw) -> str:
    """Run a short command; on failure raise DeployError with its output."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise DeployError(
            service, step, f"`{' '.join(argv)}` exited {proc.returncode}: " + " | ".join(tail), log
        )
    return proc.stdout
