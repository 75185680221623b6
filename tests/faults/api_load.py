"""The HTTP API as a child process (``streamrec api``, its real clients) and threads that keep calling it
while a test breaks what is behind it. Every answer is kept (time, status, body), so a test can check what
was answered before, during and after the fault."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from streamrec.security import hash_api_key
from tests.streams.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
API_KEY = "fault-test-key-0123456789abcdef"
AUTH = {"X-API-Key": API_KEY}


@dataclass
class ApiProcess:
    """``streamrec api`` on a free port; its output goes to ``log_path``."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> None:
        env = {
            **os.environ,
            "STREAMREC_API_API_KEYS": json.dumps([hash_api_key(API_KEY)]),
            # The load is this test's own: the per-key limit would answer 429s that say nothing about the fault.
            "STREAMREC_API_GUARD_RATE_LIMIT_DISABLED": "true",
            **self.env,
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli.main", "api", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the API exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"the API did not answer /healthz within {timeout_s:.0f}s:\n{self.tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.is_file():
            return ""
        return "\n".join(line[:300] for line in self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Answer:
    """One call: when it was sent and answered (monotonic), its status (0: no HTTP answer), its JSON body."""

    sent: float
    at: float
    status: int
    body: Any
    tag: Any = None  # what the caller sent (event ids)


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return sorted(self.answers, key=lambda a: a.sent)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.snapshot() if start <= a.sent and a.at <= end]

    def server_errors(self) -> list[Answer]:
        """5xx other than a 503, and calls that got no HTTP answer at all (the API crashed or hung)."""
        return [a for a in self.snapshot() if a.status == 0 or (a.status >= 500 and a.status != 503)]


Call = Callable[[httpx.Client, int], tuple[httpx.Response, Any]]


@contextmanager
def keep_calling(api: ApiProcess, call: Call, threads: int, rate_per_thread: float) -> Iterator[Load]:
    """``threads`` clients, each calling ``call(client, n)`` about ``rate_per_thread`` times a second until the
    block ends. A request that the API does not answer within 30 s counts as status 0."""
    load = Load()
    stop = threading.Event()

    def run(worker: int) -> None:
        interval = 1.0 / rate_per_thread
        with httpx.Client(base_url=api.url, headers=AUTH, timeout=30.0) as client:
            n = 0
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response, tag = call(client, worker * 1_000_000 + n)
                    try:
                        body = response.json()
                    except ValueError:
                        body = response.text
                    load.add(Answer(sent, time.monotonic(), response.status_code, body, tag))
                except httpx.HTTPError as exc:
                    load.add(Answer(sent, time.monotonic(), 0, f"{type(exc).__name__}: {exc}"))
                n += 1
                stop.wait(max(0.0, interval - (time.monotonic() - sent)))

    workers = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield load
    finally:
        stop.set()
        for worker in workers:
            worker.join(40)


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> float:
    """Poll ``check`` until true (an OSError, a server not listening yet, counts as false); returns the
    monotonic time it first held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s:.0f}s")


def new_event_id() -> str:
    return str(uuid.uuid4())
