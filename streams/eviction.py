"""Bounded state: users and items idle past their longest window leave the tables (changelog tombstones).

A user whose latest event is older than every window (and the de-duplication window) contributes zeros to
every count feature: keeping its state only costs memory. Idleness is measured in **event time**, against the
newest event of the same partition, never against the machine's clock: replaying old events (a backfill, the
demo's dataset) keeps every user the replay touches, and a stream that stops evicts nothing. The skew policy
bounds how far ahead a partition's newest event can be, so one bad timestamp cannot evict a partition.

The selection (:func:`idle_keys`) is pure; :class:`Evictor` applies it to the worker's tables. Each removal is
re-checked against the current value right before it (a batch may have written the key since the scan), and
written as a tombstone to the key's changelog partition, so recovery after a restart or a rebalance does not
bring the key back. Only keys of partitions this worker owns are considered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from streamrec.features import BUCKET_MS, ITEM_WINDOWS, USER_WINDOWS

log = logging.getLogger(__name__)

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)

MINUTE_MS = 60_000
#: Longest window of each table, in milliseconds of event time.
USER_HORIZON_MS = max(USER_WINDOWS.values()) * MINUTE_MS
ITEM_HORIZON_MS = max(ITEM_WINDOWS.values()) * MINUTE_MS
#: Keys removed between two yields to the event loop.
CHUNK = 2000


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    partition: int  # changelog partition of the key
    last_ms: int  # the key's latest event time; -1: none


def idle_keys(entries: Iterable[Entry], horizon_ms: int) -> list[Entry]:
    """Entries whose latest event is ``horizon_ms`` or more older than the newest event of their partition."""
    listed = list(entries)
    newest: dict[int, int] = {}
    for e in listed:
        if e.last_ms > newest.get(e.partition, -1):
            newest[e.partition] = e.last_ms
    return [e for e in listed if newest[e.partition] - e.last_ms >= horizon_ms]


class EvictableTable(Protocol[S_co]):
    def scan(self) -> Iterator[tuple[str, S_co]]:
        """Every (key, state) held locally."""

    def get(self, key: str) -> S_co | None: ...

    def delete(self, key: str, partition: int) -> None:
        """Remove ``key`` locally and write its tombstone to changelog ``partition``."""


class Evictor(Generic[S]):
    """Evicts one table's idle keys; ``entry_of`` gives a state's (key, partition, latest event time)."""

    def __init__(
        self,
        name: str,
        table: EvictableTable[S],
        entry_of: Callable[[str, S], Entry | None],
        horizon_ms: int,
        on_evicted: Callable[[int], None] = lambda n: None,
    ) -> None:
        if horizon_ms < BUCKET_MS:
            raise ValueError(f"eviction horizon {horizon_ms} ms is shorter than one bucket")
        self.name = name
        self.table = table
        self.entry_of = entry_of
        self.horizon_ms = horizon_ms
        self.on_evicted = on_evicted

    def candidates(self, owned: set[int]) -> tuple[list[Entry], dict[int, int]]:
        """Idle entries of the ``owned`` partitions, and each partition's newest event time."""
        entries = [e for key, state in self.table.scan() if (e := self.entry_of(key, state)) and e.partition in owned]
        newest: dict[int, int] = {}
        for e in entries:
            newest[e.partition] = max(newest.get(e.partition, -1), e.last_ms)
        return idle_keys(entries, self.horizon_ms), newest

    async def sweep(self, owned: set[int]) -> int:
        """Evict the idle keys of the ``owned`` partitions; the number evicted."""
        idle, newest = self.candidates(owned)
        evicted = 0
        for start in range(0, len(idle), CHUNK):
            for e in idle[start : start + CHUNK]:
                current = self.table.get(e.key)
                if current is None:
                    continue
                now = self.entry_of(e.key, current)
                # Written since the scan (a late event does not make it active, a new one does)?
                if now is None or newest[e.partition] - now.last_ms < self.horizon_ms:
                    continue
                self.table.delete(e.key, e.partition)
                evicted += 1
            await asyncio.sleep(0)  # let the agents run between chunks
        if evicted:
            log.info("evicted %d idle %s (idle >= %d min of event time)", evicted, self.name, self.horizon_ms // 60_000)
            self.on_evicted(evicted)
        return evicted


def latest_partition(covered: dict[int, list[tuple[int, int]]]) -> int | None:
    """The source partition a user's state belongs to (the one with the highest offset gone through, in
    practice its only one)."""
    spans = {p: s[-1][1] for p, s in covered.items() if s}
    if not spans:
        return None
    return max(spans, key=lambda p: spans[p])


def user_entry(key: str, state: Any) -> Entry | None:
    partition = latest_partition(state.covered)
    return None if partition is None else Entry(key, partition, state.last_ms)
