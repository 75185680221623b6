"""Bounded state: idle users and items leave the tables, measured in event time per partition."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from streams.eviction import USER_HORIZON_MS, Entry, Evictor, idle_keys, user_entry
from streams.state import UserState

DAY_MS = 24 * 3600 * 1000


def test_idle_is_measured_against_the_newest_event_of_the_same_partition() -> None:
    entries = [
        Entry("active", 0, 100 * DAY_MS),
        Entry("idle", 0, 100 * DAY_MS - 7 * DAY_MS),
        Entry("almost", 0, 100 * DAY_MS - 7 * DAY_MS + 1),
        # Partition 1's stream is a replay of old events: nothing in it is idle relative to its own newest event.
        Entry("replayed", 1, 3 * DAY_MS),
        Entry("replayed-older", 1, 2 * DAY_MS),
    ]
    assert [e.key for e in idle_keys(entries, 7 * DAY_MS)] == ["idle"]


class Table:
    def __init__(self, states: dict[str, UserState]) -> None:
        self.states = states
        self.tombstones: list[tuple[str, int]] = []

    def scan(self) -> Iterator[tuple[str, UserState]]:
        yield from list(self.states.items())

    def get(self, key: str) -> UserState | None:
        return self.states.get(key)

    def delete(self, key: str, partition: int) -> None:
        del self.states[key]
        self.tombstones.append((key, partition))


def user(last_ms: int, partition: int = 0) -> UserState:
    return UserState(last_ms=last_ms, counted=1, covered={partition: [(5, 5)]})


def test_sweep_tombstones_idle_users_of_owned_partitions_only_and_memory_follows_active_users() -> None:
    now = 400 * DAY_MS
    states = {f"idle{n}": user(now - 8 * DAY_MS, n % 2) for n in range(1000)}
    states |= {"active0": user(now, 0), "active1": user(now, 1), "foreign": user(now - 30 * DAY_MS, 2)}
    states["active2"] = user(now, 2)
    table = Table(states)
    evicted: list[int] = []
    evictor = Evictor("users", table, user_entry, USER_HORIZON_MS, evicted.append)
    assert asyncio.run(evictor.sweep(owned={0, 1})) == 1000
    assert set(table.states) == {"active0", "active1", "active2", "foreign"}, "partition 2 is not ours"
    assert sorted(p for _, p in table.tombstones) == [0] * 500 + [1] * 500
    assert evicted == [1000]
    assert asyncio.run(evictor.sweep(owned={0, 1})) == 0


def test_a_key_written_after_the_scan_is_not_evicted() -> None:
    now = 400 * DAY_MS
    table = Table({"u": user(now - 8 * DAY_MS), "v": user(now)})
    evictor: Evictor[UserState] = Evictor("users", table, user_entry, USER_HORIZON_MS)
    idle, _ = evictor.candidates({0})
    assert [e.key for e in idle] == ["u"]
    original = table.get

    def get(key: str) -> UserState | None:  # a batch brought "u" a new event between scan and removal
        if key == "u":
            table.states["u"] = user(now)
        return original(key)

    table.get = get  # type: ignore[method-assign]
    assert asyncio.run(evictor.sweep({0})) == 0 and "u" in table.states


def test_a_tombstone_removes_the_key_when_the_changelog_is_replayed() -> None:
    import faust

    app = faust.App("eviction-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    table = app.Table("evict", partitions=2)
    sent: list[tuple[Any, ...]] = []
    table.send_changelog = lambda *args, **kwargs: sent.append((*args, kwargs))  # type: ignore[method-assign]
    from streams.runtime import FaustTable

    table.data[b"u"] = user(1)
    FaustTable(table).delete("u", 1)
    assert b"u" not in table.data
    assert sent == [(1, b"u", None, {"value_serializer": "raw"})]

    def record(key: bytes, value: Any, partition: int) -> Any:
        return SimpleNamespace(key=key, value=value, message=SimpleNamespace(partition=partition, value=value))

    # Recovery replays the changelog: the value, then its tombstone.
    table.data.apply_changelog_batch([record(b"u", user(1), 1), record(b"u", None, 1)], lambda k: k, lambda v: v)
    assert b"u" not in table.data


def test_horizon_shorter_than_a_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than one bucket"):
        Evictor("users", Table({}), user_entry, 10)
