"""Fixtures for the fault tests: servers of their own (own ports, own run dir) that a test may stop, kill or
starve, so the session stack of ``tests/conftest.py`` that other suites share is never disturbed.

Every fixture here depends on ``stack``: the fault tests take the machine-wide stack lock like the other
integration tests, and the worker they start reuses ``tests/streams/conftest.py``'s ``worker_factory``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamrec.settings import KafkaSettings, RedisSettings, StackSettings
from streamrec.stack.base import Component, pid_alive
from streamrec.stack.kafka import KafkaComponent
from streamrec.stack.valkey import ValkeyComponent
from tests.conftest import StackHandle
from tests.streams.conftest import free_port, worker_factory  # noqa: F401 - fixture reused by the fault tests

REPO = Path(__file__).resolve().parents[2]
FAULT_RUN_ROOT = REPO / ".streamrec" / "fault-run"


@pytest.fixture
def fault_run_dir() -> Iterator[Path]:
    """A run dir of this test's own servers (outside tmp_path, so their logs survive a failure)."""
    path = FAULT_RUN_ROOT / uuid.uuid4().hex[:10]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def own_kafka(stack: StackHandle, fault_run_dir: Path) -> Iterator[KafkaComponent]:
    """A single-node KRaft broker of this test only, on free ports; stopped (and its data removed) afterwards."""
    if stack.kafka.external:
        pytest.skip("fault tests start their own broker; KAFKA_BOOTSTRAP_SERVERS points at an external one")
    settings = KafkaSettings(local_port=free_port(), local_controller_port=free_port())
    comp = KafkaComponent(fault_run_dir, StackSettings.load(), settings)
    comp.start(stack.stack.stack.start_timeout_s, lambda _: None)
    try:
        yield comp
    finally:
        comp.stop()


@pytest.fixture
def own_valkey(stack: StackHandle, fault_run_dir: Path) -> Iterator[ValkeyComponent]:
    """A Valkey (+bf, AOF everysec) of this test only, on a free port."""
    if stack.redis.external:
        pytest.skip("fault tests start their own Valkey; REDIS_URL points at an external server")
    comp = ValkeyComponent(fault_run_dir, RedisSettings(local_port=free_port()))
    comp.start(stack.stack.stack.start_timeout_s, lambda _: None)
    try:
        yield comp
    finally:
        comp.stop()


def run_archiver(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``streamrec archive`` as a child process, its output (stdout + stderr) on a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamrec.cli.main", "archive", *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def archiver_env(root: Path, topic: str, dlq: str, group: str, **extra: str) -> dict[str, str]:
    return {
        "STREAMREC_PATHS_ARCHIVE_ROOT": str(root),
        "STREAMREC_CONSUMERS_ARCHIVER_TOPIC": topic,
        "STREAMREC_CONSUMERS_ARCHIVER_GROUP": group,
        "STREAMREC_KAFKA_DLQ_TOPIC": dlq,
        "STREAMREC_CONSUMERS_ROLL_MAX_ROWS": "300",
        "STREAMREC_CONSUMERS_ROLL_MAX_AGE_S": "0.5",
        "STREAMREC_CONSUMERS_ARCHIVER_METRICS_PORT": "0",
        **extra,
    }


def kill_9(component: Component) -> None:
    """SIGKILL the component's process group (no shutdown of its own), reap it, forget its pid file."""
    pid = component.pid()
    assert pid is not None, f"{component.name} is not running"
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc = getattr(component, "_proc", None)
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.wait(5)
    component.pid_path.unlink(missing_ok=True)
