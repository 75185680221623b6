"""Batch planning: per-user effects, by-item bundles and their partitioning, crash re-reads end to end."""

from __future__ import annotations

import random
import uuid

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streamrec.errors import InvalidEventError
from streamrec.features import EVENT_TYPES, ITEM_COUNT_FEATURES
from streamrec.schemas.events import InteractionEvent
from streams.batch import (
    ItemBundle,
    bundle_forwards,
    decode_bundle,
    encode_bundle,
    group_bundles_by_item,
    group_by_user,
    item_partition,
    murmur2,
    plan_item,
    plan_user,
    spans_by_item,
    to_record,
)
from streams.state import DedupeLimits, EventRecord, ItemEntry, ItemState, UserState, item_features, runs

T0 = 1_767_000_000_000
LIMITS = DedupeLimits()


def rec(user: str, item: str, offset: int, etype: str = "view", partition: int = 0, eid: int = 0) -> EventRecord:
    return EventRecord(eid or uuid.uuid4().int, user, item, EVENT_TYPES.index(etype), T0 + offset, partition, offset)


def test_to_record_keeps_what_the_state_needs() -> None:
    event = InteractionEvent.new("u1", "i9", "purchase", timestamp=T0)
    r = to_record(event, partition=4, offset=77)
    assert r.event_id == uuid.UUID(event.event_id).int
    assert (r.user_id, r.item_id, EVENT_TYPES[r.etype], r.ts_ms, r.partition, r.offset) == (
        "u1",
        "i9",
        "purchase",
        T0,
        4,
        77,
    )


KEYS = [b"", b"a", b"ab", b"abc", b"abcd", b"i000123", "ü-user/42".encode(), bytes(range(256))]


@pytest.mark.parametrize("key", KEYS)
def test_murmur2_matches_kafkas_default_partitioner(key: bytes) -> None:
    assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF


def test_plan_user_counts_new_drops_duplicates_and_redoes_reprocessed_side_effects() -> None:
    state = UserState()
    a, b = rec("u", "x", 1), rec("u", "y", 2, etype="dislike")
    state, first = plan_user(state, [a, b, rec("u", "x", 3, eid=a.event_id)], lambda _: "c", LIMITS)
    assert (first.new, first.duplicates, first.reprocessed) == (2, 1, 0)
    assert first.bloom_items == ["x", "y"], "dislikes are seen items too, each item once per batch"
    assert [f.offset for f in first.forwards] == [1, 2] and first.trigger == b
    assert first.changed and first.features is not None

    # The same batch read again after a crash: nothing counted twice, every side effect redone.
    state, again = plan_user(state, [a, b, rec("u", "x", 3, eid=a.event_id)], lambda _: "c", LIMITS)
    assert (again.new, again.reprocessed, again.duplicates) == (0, 2, 1)
    assert again.bloom_items == ["x", "y"] and [f.offset for f in again.forwards] == [1, 2]
    assert again.features == first.features and state.counted == 2


def test_bundles_group_by_destination_and_source_partition_in_offset_order() -> None:
    forwards = [rec(f"u{n % 3}", f"i{n % 17}", offset=n, partition=n % 2) for n in range(200)]
    random.Random(1).shuffle(forwards)
    bundles = bundle_forwards(forwards, partitions=6)
    total = 0
    for dest, group in bundles.items():
        assert len({b.source_partition for b in group}) == len(group)
        for bundle in group:
            offsets = [e.offset for e in bundle.entries]
            assert offsets == sorted(offsets)
            assert all(item_partition(e.item_id, 6) == dest for e in bundle.entries)
            total += len(bundle.entries)
    assert total == 200


def test_bundle_codec_round_trip_and_rejection() -> None:
    bundle = ItemBundle(3, (ItemEntry("i1", 0, T0, 5), ItemEntry("i/2", 4, T0 + 1, 9)), ((2, 6), (8, 12)))
    assert decode_bundle(encode_bundle(bundle)) == bundle
    entries_only = b'{"v": 1, "p": 3, "e": [["i1", 0, 1, 5]]}'  # written before bundles carried ranges
    assert decode_bundle(entries_only) == ItemBundle(3, (ItemEntry("i1", 0, 1, 5),))
    for raw in (
        b"nope",
        b'{"v": 2, "p": 0, "e": []}',
        b'{"v": 1, "p": 0, "e": [["i", 0]]}',
        b'{"v": 2, "p": 0, "s": [[4, 6]], "e": [["i", 0, 1, 9]]}',  # entry outside the ranges
        b'{"v": 2, "p": 0, "s": [[6, 4]], "e": []}',
        b'{"v": 9, "p": 0, "s": [], "e": []}',
        b"[]",
    ):
        with pytest.raises(InvalidEventError):
            decode_bundle(raw)


def source_batches(events: list[EventRecord], size: int) -> list[list[EventRecord]]:
    return [events[k : k + size] for k in range(0, len(events), size)]


def forward_batch(
    users: dict[str, UserState], batch: list[EventRecord], partitions: int = 3
) -> list[tuple[int, ItemBundle]]:
    """What the interactions processor does with one batch: plan users, then bundle with the batch's ranges."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for p in {e.partition for e in batch}:
        spans[p] = runs(e.offset for e in batch if e.partition == p)
    forwards = []
    for user, evs in group_by_user(batch).items():
        users[user], effect = plan_user(users.get(user), evs, lambda _: "c", LIMITS, spans)
        forwards.extend(effect.forwards)
    return [(dest, b) for dest, group in bundle_forwards(forwards, partitions, spans).items() for b in group]


def apply_bundles(items: dict[str, ItemState], bundles: list[ItemBundle]) -> None:
    """What the items processor does with one by-item batch."""
    decoded = [decode_bundle(encode_bundle(b)) for b in bundles]
    spans = spans_by_item(decoded)
    for item, entries in group_bundles_by_item(decoded).items():
        items[item], _ = plan_item(items.get(item), entries, spans.get(item, ()))


def test_by_item_bundles_applied_out_of_order_and_replayed_count_every_event_once() -> None:
    """A by-item partition re-read from its committed offset after later bundles were applied (Faust lost
    the first fetch after a restart; the offset repair seeks back), then the source re-read after a crash
    forwards the same events again: the item counts equal one clean pass."""
    rng = random.Random(3)
    events = [rec(f"u{rng.randrange(4)}", f"i{rng.randrange(5)}", offset=n) for n in range(300)]
    users: dict[str, UserState] = {}
    bundles = [b for batch in source_batches(events, 25) for _, b in forward_batch(users, batch, partitions=1)]
    items: dict[str, ItemState] = {}
    hole = len(bundles) // 3
    apply_bundles(items, bundles[hole:])  # later bundles first
    apply_bundles(items, bundles)  # the repair re-reads from the committed offset: the hole and the rest
    replay: dict[str, UserState] = {}  # the source re-read from scratch forwards everything again
    for batch in source_batches(events, 40):
        apply_bundles(items, [b for _, b in forward_batch(replay, batch, partitions=1)])
    counted = sum(item_features(s).counts[ITEM_COUNT_FEATURES.index("view_count_24h")] for s in items.values())
    assert counted == len(events)
    assert sum(s.counted for s in items.values()) == len(events)
    assert all(len(spans) == 1 for s in items.values() for spans in s.covered.values()), "ranges merge back"


def test_a_source_partition_read_out_of_order_counts_every_user_event_once() -> None:
    rng = random.Random(4)
    events = [rec(f"u{rng.randrange(3)}", f"i{rng.randrange(5)}", offset=n) for n in range(200)]
    batches = source_batches(events, 20)
    users: dict[str, UserState] = {}
    order = batches[3:] + batches  # a prefetched run ahead of the re-read from the committed offset
    for batch in order:
        forward_batch(users, batch, partitions=1)
    assert sum(s.counted for s in users.values()) == len(events)
    assert all(s.covered == {0: [(0, 199)]} for s in users.values())


def test_user_and_item_side_survive_a_crash_between_any_two_steps() -> None:
    """Simulate the worker: per batch, user state -> forward -> item state; crash at random points.

    Whatever was not "committed" is read again; the final counts must equal one clean pass.
    """
    rng = random.Random(7)
    events = [rec(f"u{rng.randrange(5)}", f"i{rng.randrange(9)}", offset=n) for n in range(400)]
    events += [rec(e.user_id, e.item_id, 400 + n, eid=e.event_id) for n, e in enumerate(events[:40])]  # dups

    def run(crash_rate: float) -> tuple[dict[str, UserState], dict[str, ItemState]]:
        users: dict[str, UserState] = {}
        items: dict[str, ItemState] = {}
        committed = 0
        while committed < len(events):
            batch = events[committed : committed + rng.randint(1, 60)]
            forwards = []
            for user, evs in group_by_user(batch).items():
                users[user], effect = plan_user(users.get(user), evs, lambda _: "c", LIMITS)
                forwards.extend(effect.forwards)
            if rng.random() < crash_rate:
                continue  # crash after the user changelog write, before forwarding: batch read again
            bundles = [b for group in bundle_forwards(forwards, 6).values() for b in group]
            for item, entries in group_bundles_by_item(bundles).items():
                items[item], _ = plan_item(items.get(item), entries)
            if rng.random() < crash_rate:
                continue  # crash after forwarding and item writes, before the commit
            committed += len(batch)
        return users, items

    clean_users, clean_items = run(0.0)
    crashy_users, crashy_items = run(0.4)
    assert {u: s.counted for u, s in crashy_users.items()} == {u: s.counted for u, s in clean_users.items()}
    assert sum(s.counted for s in clean_users.values()) == 400
    for item, state in clean_items.items():
        assert item_features(crashy_items[item]).counts == item_features(state).counts, item
    views = ITEM_COUNT_FEATURES.index("view_count_24h")
    assert sum(item_features(s).counts[views] for s in clean_items.values()) == 400


def test_a_user_covers_only_the_ranges_of_its_batch_that_hold_its_events() -> None:
    """A batch that read many short runs (offsets skipped by the broker: transaction markers) costs each
    user only the runs with its own events."""
    spans = {0: runs(range(0, 400, 2))}  # 200 runs of one offset
    state, effect = plan_user(None, [rec("u", "i", 10), rec("u", "j", 12)], lambda _: "c", LIMITS, spans)
    assert state.covered == {0: [(10, 10), (12, 12)]} and effect.covered_more is False
    state, effect = plan_user(None, [rec("u", "i", 10)], lambda _: "c", LIMITS, {0: [(5, 20)]})
    assert state.covered == {0: [(5, 20)]} and effect.covered_more and effect.changed
