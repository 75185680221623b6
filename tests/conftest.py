"""Shared fixtures. Integration tests start the real local stack once per session, on ports and a run dir
of their own (so a developer's running stack is neither used nor stopped), and stop what they started.

Set KAFKA_BOOTSTRAP_SERVERS / REDIS_URL / TRITON_URL to run them against external services instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamrec.client.admin import TopicSpec, delete_topics, ensure_topics
from streamrec.settings import KafkaSettings, RedisSettings, StackSettings, TritonSettings
from streamrec.stack import LocalStack

REPO = Path(__file__).resolve().parent.parent
TEST_RUN_DIR = REPO / ".streamrec" / "test-run"

# Ports distinct from the defaults so that tests never touch a developer's stack.
TEST_ENV = {
    "STREAMREC_STACK_RUN_DIR": str(TEST_RUN_DIR),
    "STREAMREC_KAFKA_LOCAL_PORT": "29092",
    "STREAMREC_KAFKA_LOCAL_CONTROLLER_PORT": "29093",
    "STREAMREC_REDIS_LOCAL_PORT": "26379",
    "STREAMREC_TRITON_HTTP_PORT": "28000",
    "STREAMREC_TRITON_GRPC_PORT": "28001",
    "STREAMREC_TRITON_METRICS_PORT": "28002",
    "STREAMREC_TRITON_MODEL_REPOSITORY": str(TEST_RUN_DIR / "model_repository"),
}


@dataclass
class StackHandle:
    stack: LocalStack
    kafka: KafkaSettings
    redis: RedisSettings
    triton: TritonSettings
    env: dict[str, str]
    started: list[str]


def _missing_prerequisites() -> str | None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return None
    for tool, why in (("java", "Java 17+ runs the local Kafka broker"), ("mvn", "Maven resolves the Kafka jars")):
        if shutil.which(tool) is None:
            return f"integration tests skipped: {tool} not found ({why})"
    return None


@pytest.fixture(scope="session")
def stack() -> Iterator[StackHandle]:
    """Kafka + Valkey(+bf) running for the whole session (Triton only via the ``triton`` fixture)."""
    reason = _missing_prerequisites()
    if reason:
        pytest.skip(reason)
    # Two pytest sessions on one machine (two checkouts, too) would share the test ports, and one's teardown
    # would stop the other's servers: sessions take turns, machine-wide.
    TEST_RUN_DIR.mkdir(parents=True, exist_ok=True)
    lock_path = Path(tempfile.gettempdir()) / f"streamrec-test-stack-{TEST_ENV['STREAMREC_KAFKA_LOCAL_PORT']}.lock"
    session_lock = open(lock_path, "w")  # noqa: SIM115 - held for the whole session
    fcntl.flock(session_lock, fcntl.LOCK_EX)
    saved = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV)
    local = LocalStack(StackSettings.load(), KafkaSettings.load(), RedisSettings.load(), TritonSettings.load())
    started = local.up(with_triton=False)
    handle = StackHandle(local, local.kafka, local.redis, local.triton, dict(TEST_ENV), started)
    try:
        yield handle
    finally:
        for comp in reversed(local.components(with_triton=True)):
            if comp.name in handle.started:
                comp.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        session_lock.close()


@pytest.fixture(scope="session")
def triton(stack: StackHandle) -> TritonSettings:
    """Start Triton (once) on the session's model repository."""
    comp = stack.stack.component("triton")
    stack.triton.model_repository.mkdir(parents=True, exist_ok=True)
    if comp.start(stack.stack.stack.start_timeout_s, lambda _: None):
        stack.started.append("triton")
    return stack.triton


@pytest.fixture
def unique_topics(stack: StackHandle) -> Iterator[Callable[..., str]]:
    """Factory of uniquely named topics, deleted after the test."""
    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 6) -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
        ensure_topics(stack.kafka, [TopicSpec(name, partitions)])
        created.append(name)
        return name

    yield make
    delete_topics(stack.kafka, created)


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:12]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Anything that needs the real stack is an integration test (``-m "not integration"`` skips them)."""
    for item in items:
        if {"stack", "triton"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
