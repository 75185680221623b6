"""Local-stack components: real servers started as child processes, with pid files, logs and health checks.

``up`` starts what is not running (twice is a no-op), ``down`` stops only what ``up`` started (it has a
pid file in the run dir), a component whose external URL is set is never started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamrec.errors import StackError


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # running | stopped | external | unhealthy
    health: Health
    pid: int | None
    log_path: Path | None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    with contextlib.suppress(FileNotFoundError, OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 20) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        data = handle.read().decode("utf-8", "replace")
    return "\n".join(data.splitlines()[-lines:])


class Component(ABC):
    """One server of the local stack."""

    name: str = "component"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.dir = run_dir / self.name
        self.log_path = self.dir / f"{self.name}.log"
        self.pid_path = self.dir / f"{self.name}.pid"

    # -- to implement ---------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def external(self) -> bool:
        """True when settings point at a server this stack must not start."""

    @abstractmethod
    def health(self) -> Health:
        """Cheap, side-effect-free check of the server."""

    @abstractmethod
    def command(self) -> tuple[Sequence[str], Mapping[str, str]]:
        """argv and extra environment of the server process."""

    def ports(self) -> list[int]:
        """Local ports the server listens on; checked to be free before it starts."""
        return []

    def install(self, progress: Callable[[str], None]) -> None:  # noqa: B027 - optional hook
        """Fetch binaries into the cache (idempotent)."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """One-time state set-up before the first start (e.g. format storage)."""

    def after_start(self) -> None:  # noqa: B027 - optional hook
        """Set-up that needs the running server (e.g. create topics)."""

    # -- process management -------------------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def status(self) -> ComponentStatus:
        if self.external:
            return ComponentStatus(self.name, "external", self.health(), None, None)
        pid = self.pid()
        if pid is None:
            return ComponentStatus(self.name, "stopped", Health(False, "not running"), None, self.log_path)
        health = self.health()
        return ComponentStatus(self.name, "running" if health.ok else "unhealthy", health, pid, self.log_path)

    def start(self, timeout_s: float, progress: Callable[[str], None]) -> bool:
        """Start unless running; returns True if this call started it. Raises StackError on failure."""
        if self.external:
            return False
        if self.pid() is not None:
            self.wait_healthy(timeout_s)
            return False
        self.install(progress)
        for port in self.ports():
            if port_in_use(port):
                # Otherwise the health check could pass against somebody else's server on that port.
                raise StackError(
                    self.name, f"port {port} on 127.0.0.1 is already in use by another process; choose another port"
                )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv, extra_env = self.command()
        env = {**os.environ, **extra_env}
        progress(f"starting {self.name}")
        with open(self.log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=self.dir,
                    start_new_session=True,
                )
            except OSError as exc:
                raise StackError(self.name, f"cannot execute {argv[0]}: {exc}", str(self.log_path)) from None
        self.pid_path.write_text(str(proc.pid))
        self._proc = proc
        self.wait_healthy(timeout_s, proc)
        self.after_start()
        return True

    def wait_healthy(self, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        last = Health(False, "no health check yet")
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                last_line = tail(self.log_path, 5).splitlines()
                why = last_line[-1] if last_line else "no output"
                raise StackError(self.name, f"exited with code {proc.returncode}: {why}", str(self.log_path))
            last = self.health()
            if last.ok:
                if proc is not None:
                    # Some servers (Triton) answer health checks before their last listener is bound and exit
                    # if that bind fails: healthy means still alive a moment later.
                    time.sleep(1.0)
                    if proc.poll() is not None:
                        continue
                return
            time.sleep(0.25)
        raise StackError(self.name, f"not healthy after {timeout_s:.0f}s: {last.detail}", str(self.log_path))

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the process this stack started; returns True if one was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        proc = getattr(self, "_proc", None)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(5)
        self.pid_path.unlink(missing_ok=True)
        return True
