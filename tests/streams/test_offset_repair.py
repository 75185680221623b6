"""Detection of partitions whose commits Faust can never move again (messages lost after recovery)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from streams.offset_repair import OffsetGapRepair, lost_heads


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass(frozen=True)
class Msg:
    tp: TP
    offset: int
    refcount: int = 1


A, B = TP("in", 0), TP("in", 1)


def test_a_hole_with_nothing_in_flight_is_lost() -> None:
    assert lost_heads({A: 132}, {A: [269, 270, 271]}, []) == {A: (132, 269)}


def test_contiguous_acks_and_holes_still_in_flight_are_not_reported() -> None:
    assert lost_heads({A: 132, B: 10}, {A: [132, 133], B: [12]}, [(B, 11)]) == {}


def test_unknown_committed_offset_or_no_acks_are_not_reported() -> None:
    assert lost_heads({A: None}, {A: [5]}, []) == {}
    assert lost_heads({A: 5}, {A: []}, []) == {}


@dataclass
class FakeConsumer:
    _committed_offset: dict[Any, int | None]
    _acked: dict[Any, list[int]]
    _unacked_messages: set[Any] = field(default_factory=set)
    seeks: list[tuple[Any, int]] = field(default_factory=list)

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_repair_seeks_back_only_when_the_same_hole_is_seen_twice() -> None:
    consumer = FakeConsumer({A: 132, B: 7}, {A: [269], B: [9]}, {Msg(B, 8)})
    repaired: list[int] = []
    repair = OffsetGapRepair(lambda: consumer, {"in"}, lambda: repaired.append(1))
    assert asyncio.run(repair.check()) == []  # first sighting: could be a moment's state
    assert asyncio.run(repair.check()) == [A]
    assert consumer.seeks == [(A, 132)] and repaired == [1]
    consumer._acked[A] = [132]  # re-read: the hole is being filled
    assert asyncio.run(repair.check()) == []
    assert consumer.seeks == [(A, 132)]
