"""Repair of a Faust commit stall: messages lost between recovery and the seek to committed offsets.

faust-streaming (0.15, issue #596, open) resumes fetching before it seeks to the committed offsets when a
worker (re)joins; messages delivered in that window can be dropped from the pipeline while the read
position moves past them. Later messages of the partition are processed and acknowledged, but the
commit waits for a contiguous run after the committed offset and never moves again: lag grows forever
although everything after the hole was processed.

A partition is in that state when some offset after the committed one is acknowledged while no message
between the committed offset and the first acknowledged one is still in flight. Messages of one partition
go through the stream in order, so such a message cannot still be on its way: it was lost. The repair
seeks the partition back to its committed offset; the hole and what follows are read again, which the
processors handle idempotently (re-read events are recognised by their source offsets).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streams.faust_compat import OffsetBook

log = logging.getLogger(__name__)


def lost_heads(
    committed: Mapping[Any, int | None],
    acked: Mapping[Any, Iterable[int]],
    in_flight: Iterable[tuple[Any, int]],
) -> dict[Any, tuple[int, int]]:
    """Partitions whose commit is blocked by lost messages: ``{tp: (committed, first acknowledged)}``."""
    pending: dict[Any, list[int]] = {}
    for tp, offset in in_flight:
        pending.setdefault(tp, []).append(offset)
    out: dict[Any, tuple[int, int]] = {}
    for tp, offsets in acked.items():
        start = committed.get(tp)
        offsets = list(offsets)
        if start is None or not offsets:
            continue
        first = min(offsets)
        if first <= start:
            continue
        if any(start <= o < first for o in pending.get(tp, ())):
            continue  # the hole is still being processed
        out[tp] = (start, first)
    return out


class OffsetGapRepair:
    """Checks periodically; a partition found stalled twice in a row (same hole) is sought back."""

    def __init__(self, consumer: Callable[[], Any], topics: set[str], on_repair: Callable[[], None]) -> None:
        self.consumer = consumer
        self.topics = topics
        self.on_repair = on_repair
        self._suspects: dict[Any, tuple[int, int]] = {}

    def snapshot(self) -> dict[Any, tuple[int, int]]:
        book = OffsetBook(self.consumer())
        in_flight = [(m.tp, m.offset) for m in book.in_flight(self.topics)]
        return lost_heads(book.committed(), book.acked(self.topics), in_flight)

    async def check(self) -> list[Any]:
        found = self.snapshot()
        repaired = []
        for tp, hole in found.items():
            if self._suspects.get(tp) == hole:
                start, first = hole
                log.warning(
                    "offsets %d..%d of %s/%d were lost by Faust after recovery (faust-streaming#596); "
                    "re-reading the partition from its committed offset %d",
                    start,
                    first - 1,
                    tp.topic,
                    tp.partition,
                    start,
                )
                await self.consumer().seek(tp, start)
                self.on_repair()
                repaired.append(tp)
        self._suspects = {tp: hole for tp, hole in found.items() if tp not in repaired}
        return repaired
