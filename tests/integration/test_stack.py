"""The local stack: healthy components, idempotent up, down stops only what up started."""

from __future__ import annotations

from pathlib import Path

from streamrec.settings import KafkaSettings, RedisSettings, StackSettings, TritonSettings
from streamrec.stack import LocalStack
from streamrec.stack.valkey import ValkeyComponent
from tests.conftest import StackHandle


def test_status_reports_kafka_and_valkey_with_bloom_healthy(stack: StackHandle) -> None:
    rows = {row.name: row for row in stack.stack.status()}
    assert rows["kafka"].health.ok and "topics 3/3" in rows["kafka"].health.detail
    assert rows["valkey"].health.ok and "bf loaded" in rows["valkey"].health.detail


def test_up_twice_is_a_no_op(stack: StackHandle) -> None:
    pids = {row.name: row.pid for row in stack.stack.status()}
    assert stack.stack.up(with_triton=False) == []
    assert {row.name: row.pid for row in stack.stack.status()} == pids


def test_down_stops_only_what_its_own_up_started(stack: StackHandle, tmp_path: Path) -> None:
    other_redis = RedisSettings(local_port=26390)
    comp = ValkeyComponent(tmp_path / "run", other_redis)
    assert comp.start(30, lambda _: None) is True
    assert comp.status().state == "running"
    assert comp.start(30, lambda _: None) is False, "second start is a no-op"

    # A stack in another run dir has no pid files for the session's servers: its down stops nothing.
    stranger = LocalStack(StackSettings(run_dir=tmp_path / "empty"), KafkaSettings(), RedisSettings(), TritonSettings())
    assert stranger.down() == []
    assert all(row.health.ok for row in stack.stack.status() if row.name in ("kafka", "valkey"))

    assert comp.stop() is True
    assert comp.status().state == "stopped"
    assert comp.stop() is False
