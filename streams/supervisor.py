"""``streamrec worker --workers N``: N worker processes in one consumer group on one machine, supervised.

Faust runs one event loop per process, so a machine with several cores scales out by processes. Each child
is a plain ``streamrec worker`` with the same app id (one consumer group: Kafka spreads the partitions,
tables follow them) and its own ``/metrics`` port (``web_port + index``) and data directory. The first
child starts alone until it serves ``/metrics``: it creates the internal topics and applies the Feast
repository, which the others would otherwise race on.

Supervision: a child that exits while the supervisor is not stopping is started again after a pause; more
than ``max_restarts`` exits within ``restart_window_s`` stop everything with exit code 1 (a crash loop is
louder than a worker silently missing). SIGTERM or SIGINT stops every child with SIGTERM, waits up to
``stop_timeout_s``, then kills what is left. Children get SIGTERM if the supervisor itself dies (Linux).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from streams.settings import StreamsSettings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2)


def worker_command() -> list[str]:
    return [sys.executable, "-m", "streamrec.cli.main", "worker"]


def child_env(base: Mapping[str, str], settings: StreamsSettings, index: int) -> dict[str, str]:
    """The environment of child ``index``: the same app id, its own web port and data directory."""
    return {
        **base,
        "STREAMREC_STREAMS_APP_ID": settings.app_id,
        "STREAMREC_STREAMS_WEB_PORT": str(settings.web_port + index),
        "STREAMREC_STREAMS_DATA_DIR": str(settings.data_dir / f"worker-{index}"),
    }


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    index: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    exits: list[float] = field(default_factory=list)  # monotonic times of unexpected exits


class Supervisor:
    def __init__(
        self,
        workers: int,
        settings: StreamsSettings,
        *,
        command: Sequence[str] | None = None,
        base_env: Mapping[str, str] | None = None,
        max_restarts: int = 5,
        restart_window_s: float = 60.0,
        restart_delay_s: float = 1.0,
        first_ready_timeout_s: float = 120.0,
        stop_timeout_s: float | None = None,
        ready: Callable[[int], bool] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.settings = settings
        self.command = list(command or worker_command())
        env = dict(os.environ if base_env is None else base_env)
        self.children = [Child(i, child_env(env, settings, i)) for i in range(workers)]
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.restart_delay_s = restart_delay_s
        self.first_ready_timeout_s = first_ready_timeout_s
        # A child's own shutdown waits up to shutdown_timeout_s for Feast; leave it that and some.
        self.stop_timeout_s = stop_timeout_s if stop_timeout_s is not None else settings.shutdown_timeout_s + 20
        self.ready = ready or self._serves_metrics
        self._stopping = False

    def _serves_metrics(self, index: int) -> bool:
        url = f"http://127.0.0.1:{self.settings.web_port + index}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(self.command, env=child.env, preexec_fn=_die_with_parent)
        log.info("worker %d started (pid %d)", child.index, child.proc.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        """Until SIGTERM/SIGINT (0) or a crash loop (1)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._supervise()
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _supervise(self) -> int:
        first, *rest = self.children
        self._start(first)
        deadline = time.monotonic() + self.first_ready_timeout_s
        while not self._stopping and time.monotonic() < deadline and not self.ready(first.index):
            if first.proc is not None and first.proc.poll() is not None:
                log.error("worker 0 exited with %s before it was ready", first.proc.returncode)
                return 1
            time.sleep(0.5)
        for child in rest:
            if not self._stopping:
                self._start(child)
        while not self._stopping:
            time.sleep(0.5)
            for child in self.children:
                if self._stopping or child.proc is None or child.proc.poll() is None:
                    continue
                now = time.monotonic()
                child.exits = [t for t in child.exits if now - t < self.restart_window_s] + [now]
                log.warning("worker %d exited with %s", child.index, child.proc.returncode)
                if len(child.exits) > self.max_restarts:
                    log.error(
                        "worker %d exited %d times within %.0f s; stopping all workers",
                        child.index,
                        len(child.exits),
                        self.restart_window_s,
                    )
                    return 1
                time.sleep(self.restart_delay_s)
                if not self._stopping:
                    self._start(child)
        return 0

    def stop(self) -> None:
        """SIGTERM to every live child, then SIGKILL to those still running after ``stop_timeout_s``."""
        self._stopping = True
        live = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in live:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop within %.0f s; killing it", proc.pid, self.stop_timeout_s)
                proc.kill()
                proc.wait(5)
