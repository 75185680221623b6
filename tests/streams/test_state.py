"""The pure state logic: windows, recent items, top category, the dedupe / re-read rules, codecs."""

from __future__ import annotations

import dataclasses
import json
import random
import uuid

import pandas as pd
import pytest

from streamrec.errors import DataError
from streamrec.features import EVENT_TYPES, ITEM_COUNT_FEATURES, USER_COUNT_FEATURES
from streams.state import (
    MAX_SPANS,
    DedupeLimits,
    EventRecord,
    ItemEntry,
    ItemState,
    Outcome,
    UserState,
    apply_item_entry,
    apply_user_event,
    cover,
    dump_item,
    dump_user,
    is_covered,
    item_features,
    load_item,
    load_user,
    prune_user,
    runs,
    user_features,
)
from tests.streams.ground_truth import item_truth, user_truth

T0 = 1_767_000_000_000
CATEGORIES = {f"i{n}": f"c{n % 3}" for n in range(30)}  # i30..i39 are not in the catalog: "unknown"
LIMITS = DedupeLimits(max_events=100_000, window_minutes=10**9)


def record(user: str, item: str, etype: str, ts_ms: int, offset: int, partition: int = 0, eid: int = 0) -> EventRecord:
    return EventRecord(eid or uuid.uuid4().int, user, item, EVENT_TYPES.index(etype), ts_ms, partition, offset)


def random_events(seed: int, n: int, users: int, span_ms: int) -> list[EventRecord]:
    rng = random.Random(seed)
    out = []
    for offset in range(n):
        # Mostly increasing time with jitter, so that some events arrive out of order.
        ts = T0 + int(span_ms * offset / n) + rng.randint(-3_600_000, 600_000)
        etype = rng.choices(EVENT_TYPES, weights=[50, 20, 10, 5, 5])[0]
        out.append(record(f"u{rng.randrange(users)}", f"i{rng.randrange(40)}", etype, ts, offset))
    return out


def frame(events: list[EventRecord]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [e.user_id for e in events],
            "item_id": [e.item_id for e in events],
            "event_type": [EVENT_TYPES[e.etype] for e in events],
            "ts_ms": [e.ts_ms for e in events],
        }
    )


def category(item: str) -> str:
    return CATEGORIES.get(item, "unknown")


@pytest.mark.parametrize("span_days", [0.01, 1.0, 9.0])
def test_user_features_equal_the_pandas_ground_truth(span_days: float) -> None:
    events = random_events(seed=int(span_days * 100), n=3000, users=7, span_ms=int(span_days * 86_400_000))
    states: dict[str, UserState] = {}
    for n, ev in enumerate(events):
        apply_user_event(states.setdefault(ev.user_id, UserState()), ev, category(ev.item_id))
        if n % 97 == 0:  # pruning now and then (as the worker does per batch) must not change any feature
            prune_user(states[ev.user_id], LIMITS)
    truth = user_truth(frame(events), CATEGORIES)
    assert set(states) == set(truth)
    for user, state in states.items():
        feats, expected = user_features(state), truth[user]
        assert dict(zip(USER_COUNT_FEATURES, feats.counts, strict=True)) == {
            name: expected[name] for name in USER_COUNT_FEATURES
        }, user
        assert list(feats.recent_items) == expected["recent_items"], user
        assert feats.top_category == expected["top_category_24h"], user
        assert feats.last_event_ms == expected["last_event_ms"]
        assert state.counted == expected["events"]


def test_windows_are_one_minute_buckets_ending_at_the_latest_event() -> None:
    state = UserState()
    base = (T0 // 60_000) * 60_000
    apply_user_event(state, record("u", "a", "view", base, 0), "c")
    # 59 min 59.999 s later: bucket 59, so the first view is still inside the hour.
    apply_user_event(state, record("u", "b", "view", base + 59 * 60_000 + 59_999, 1), "c")
    assert user_features(state).counts[USER_COUNT_FEATURES.index("view_count_1h")] == 2
    apply_user_event(state, record("u", "c", "click", base + 60 * 60_000, 2), "c")
    counts = dict(zip(USER_COUNT_FEATURES, user_features(state).counts, strict=True))
    assert counts["view_count_1h"] == 1  # the first view is now 60 buckets back
    assert counts["view_count_24h"] == 2 and counts["click_count_1h"] == 1


def test_dislikes_count_but_never_enter_recent_items_or_top_category() -> None:
    state = UserState()
    apply_user_event(state, record("u", "a", "dislike", T0, 0), "c1")
    feats = user_features(state)
    assert feats.recent_items == () and feats.top_category is None
    assert feats.counts[USER_COUNT_FEATURES.index("dislike_count_1h")] == 1


def test_recent_items_keep_twenty_newest_first_with_ties_in_arrival_order() -> None:
    state = UserState()
    for n in range(25):
        apply_user_event(state, record("u", f"i{n}", "view", T0 + (n // 2) * 1000, n), "c")
    recent = user_features(state).recent_items
    assert recent == tuple(f"i{n}" for n in range(24, 4, -1))
    apply_user_event(state, record("u", "old", "view", T0 - 10_000, 99), "c")
    assert user_features(state).recent_items == recent  # older than everything kept


def test_same_id_at_the_same_position_is_a_reprocess_and_counts_once() -> None:
    state = UserState()
    ev = record("u", "a", "view", T0, offset=5)
    assert apply_user_event(state, ev, "c") is Outcome.NEW
    assert apply_user_event(state, ev, "c") is Outcome.REPROCESSED
    assert state.counted == 1
    assert user_features(state).counts[USER_COUNT_FEATURES.index("view_count_1h")] == 1


def test_same_id_at_another_position_is_a_duplicate() -> None:
    state = UserState()
    ev = record("u", "a", "view", T0, offset=5)
    apply_user_event(state, ev, "c")
    assert apply_user_event(state, record("u", "a", "view", T0, offset=9, eid=ev.event_id), "c") is Outcome.DUPLICATE
    assert apply_user_event(state, record("u", "a", "view", T0, offset=2, partition=3, eid=ev.event_id), "c") is (
        Outcome.DUPLICATE
    )
    assert state.counted == 1


def test_evicted_id_at_a_covered_offset_is_stale_not_recounted() -> None:
    limits = DedupeLimits(max_events=2, window_minutes=10**9)
    state = UserState()
    evs = [record("u", "a", "view", T0 + n, offset=n) for n in range(5)]
    for ev in evs:
        apply_user_event(state, ev, "c")
    prune_user(state, limits)
    assert len(state.seen) == 2
    assert apply_user_event(state, evs[0], "c") is Outcome.STALE
    assert apply_user_event(state, evs[4], "c") is Outcome.REPROCESSED
    assert state.counted == 5


def test_a_duplicates_offset_is_covered_so_its_reread_is_not_counted_after_eviction() -> None:
    limits = DedupeLimits(max_events=1, window_minutes=10**9)
    state = UserState()
    first = record("u", "a", "view", T0, offset=1)
    apply_user_event(state, first, "c")
    dup = record("u", "a", "view", T0, offset=2, eid=first.event_id)
    assert apply_user_event(state, dup, "c") is Outcome.DUPLICATE
    apply_user_event(state, record("u", "b", "view", T0, offset=3), "c")
    prune_user(state, limits)  # evicts `first`
    assert apply_user_event(state, dup, "c") is Outcome.STALE
    assert state.counted == 2


def test_the_dedupe_window_forgets_ids_older_than_its_age_bound() -> None:
    limits = DedupeLimits(max_events=100, window_minutes=60)
    state = UserState()
    old = record("u", "a", "view", T0, offset=0)
    apply_user_event(state, old, "c")
    apply_user_event(state, record("u", "b", "view", T0 + 3_600_000, offset=1), "c")
    prune_user(state, limits)
    assert old.event_id not in state.seen and len(state.seen) == 1
    # A late duplicate of a forgotten id at a new offset is counted again: the window is bounded.
    assert apply_user_event(state, record("u", "a", "view", T0, 2, eid=old.event_id), "c") is Outcome.NEW


def test_pruning_drops_buckets_no_window_can_count() -> None:
    state = UserState()
    apply_user_event(state, record("u", "a", "view", T0, 0), "c")
    apply_user_event(state, record("u", "b", "view", T0 + 8 * 86_400_000, 1), "c")
    prune_user(state, LIMITS)
    assert len(state.buckets) == 1 and len(state.categories) == 1


def test_user_state_survives_the_codec() -> None:
    events = random_events(seed=3, n=500, users=2, span_ms=3 * 86_400_000)
    states: dict[str, UserState] = {}
    for ev in events:
        apply_user_event(states.setdefault(ev.user_id, UserState()), ev, category(ev.item_id))
    for state in states.values():
        restored = load_user(dump_user(state))
        assert restored == state
        assert user_features(restored) == user_features(state)


def test_user_state_written_with_one_list_per_event_id_still_reads_and_packed_ids_take_under_half() -> None:
    events = random_events(seed=5, n=300, users=1, span_ms=3_600_000)
    state = UserState()
    for ev in events:
        apply_user_event(state, ev, category(ev.item_id))
    packed = dump_user(state)
    payload = json.loads(packed)
    payload["v"] = 2
    payload["s"] = [[eid, p, o, m] for eid, (p, o, m) in state.seen.items()]
    listed = json.dumps(payload, separators=(",", ":")).encode()
    assert load_user(listed) == load_user(packed) == state
    packed_ids, listed_ids = (json.dumps(p["s"], separators=(",", ":")) for p in (json.loads(packed), payload))
    assert len(packed_ids) < 0.5 * len(listed_ids)


@pytest.mark.parametrize(
    "seen",
    [
        {"i": "not base64!", "p": [], "o": [], "m": []},
        {"i": "AAAA", "p": [[0, 1]], "o": [1], "m": [1]},  # 3 bytes: not a whole id
        {"i": "A" * 22 + "==", "p": [[0, 2]], "o": [1], "m": [1]},  # one id, two partitions' worth
    ],
)
def test_corrupt_packed_event_ids_raise_a_typed_error(seen: dict[str, object]) -> None:
    raw = json.dumps({"v": 3, "l": 0, "n": 0, "r": [], "b": [], "c": [], "s": seen, "k": []}).encode()
    with pytest.raises(DataError):
        load_user(raw)


@pytest.mark.parametrize("raw", [b"{not json", b'{"v": 99}', b'{"v": 1, "l": 0}', b"[]", b"\xff"])
def test_corrupt_state_raises_a_typed_error(raw: bytes) -> None:
    with pytest.raises(DataError):
        load_user(raw)
    with pytest.raises(DataError):
        load_item(raw)


@pytest.mark.parametrize("span_days", [0.05, 3.0])
def test_item_features_equal_the_pandas_ground_truth(span_days: float) -> None:
    events = random_events(seed=11, n=3000, users=50, span_ms=int(span_days * 86_400_000))
    states: dict[str, ItemState] = {}
    for ev in events:
        entry = ItemEntry(ev.item_id, ev.etype, ev.ts_ms, ev.offset)
        assert apply_item_entry(states.setdefault(ev.item_id, ItemState()), ev.partition, entry)
    truth = item_truth(frame(events))
    assert set(states) == set(truth)
    for item, state in states.items():
        feats, expected = item_features(state), truth[item]
        assert dict(zip(ITEM_COUNT_FEATURES, feats.counts, strict=True)) == {
            name: expected[name] for name in ITEM_COUNT_FEATURES
        }
        assert feats.ctr_24h == pytest.approx(expected["ctr_24h"])
        assert feats.trending == pytest.approx(expected["trending_score"])
        assert feats.popularity_24h == pytest.approx(expected["popularity_24h"])
        assert feats.last_event_ms == expected["last_event_ms"]
        assert load_item(dump_item(state)) == state


def test_item_coverage_skips_reforwarded_entries_per_source_partition_and_applies_late_ones() -> None:
    state = ItemState()
    view, click = EVENT_TYPES.index("view"), EVENT_TYPES.index("click")
    assert apply_item_entry(state, 0, ItemEntry("i", view, T0, 10))
    assert apply_item_entry(state, 1, ItemEntry("i", click, T0, 3))  # other partition: its own coverage
    assert not apply_item_entry(state, 0, ItemEntry("i", view, T0, 10))  # re-forwarded
    # Read after offset 10 but never applied (a lost fetch re-read later): counted, not taken for a repeat.
    assert apply_item_entry(state, 0, ItemEntry("i", view, T0, 9))
    assert not apply_item_entry(state, 0, ItemEntry("i", view, T0, 9))
    feats = dict(zip(ITEM_COUNT_FEATURES, item_features(state).counts, strict=True))
    assert feats["view_count_1h"] == 2 and feats["click_count_1h"] == 1
    assert item_features(state).ctr_24h == 0.5


def test_an_unknown_id_read_after_later_offsets_is_new_not_stale() -> None:
    """A partition re-read from its committed offset after later offsets were applied (Faust dropped the
    first fetch): the events never applied count once, those applied are re-reads."""
    state = UserState()
    late = [record("u", f"i{n}", "view", T0 + n, offset=n) for n in range(10, 15)]
    early = [record("u", f"i{n}", "view", T0 + n, offset=n) for n in range(5, 10)]
    assert all(apply_user_event(state, ev, "c") is Outcome.NEW for ev in late)
    assert all(apply_user_event(state, ev, "c") is Outcome.NEW for ev in early)
    assert all(apply_user_event(state, ev, "c") is Outcome.REPROCESSED for ev in early + late)
    assert state.counted == 10
    assert state.covered == {0: [(5, 14)]}


def test_cover_merges_overlapping_and_adjacent_ranges_and_bounds_their_number() -> None:
    spans: list[tuple[int, int]] = []
    assert cover(spans, 10, 12) and cover(spans, 20, 25) and cover(spans, 0, 3)
    assert spans == [(0, 3), (10, 12), (20, 25)]
    assert not cover(spans, 21, 24)  # inside
    assert cover(spans, 13, 19)  # adjacent to both: one range
    assert spans == [(0, 3), (10, 25)]
    assert cover(spans, 2, 11) and spans == [(0, 25)]
    assert [is_covered(spans, o) for o in (-1, 0, 25, 26)] == [False, True, True, False]
    many: list[tuple[int, int]] = []
    for n in range(MAX_SPANS + 5):
        cover(many, 10 * n, 10 * n + 1)
    assert (
        len(many) == MAX_SPANS and many[0] == (0, 51) and many[-1] == (10 * (MAX_SPANS + 4), 10 * (MAX_SPANS + 4) + 1)
    )
    assert runs([7, 3, 4, 5, 9, 8, 4]) == [(3, 5), (7, 9)]


def test_state_written_with_one_watermark_per_partition_reads_as_the_range_up_to_it() -> None:
    user = load_user(b'{"v":1,"l":5,"n":1,"r":[],"b":[],"c":[],"s":[],"w":[[2,41]]}')
    item = load_item(b'{"v":1,"l":5,"n":1,"b":[],"w":[[0,7],[1,3]]}')
    assert user.covered == {2: [(0, 41)]} and item.covered == {0: [(0, 7)], 1: [(0, 3)]}
    assert apply_user_event(user, record("u", "a", "view", T0, offset=41, partition=2), "c") is Outcome.STALE
    assert apply_user_event(user, record("u", "a", "view", T0, offset=42, partition=2), "c") is Outcome.NEW


def test_dedupe_ids_expire_by_read_time_so_a_far_future_event_does_not_expire_them() -> None:
    window = DedupeLimits(max_events=100, window_minutes=60)
    minute = 60_000
    state = UserState()
    first = dataclasses.replace(record("u", "a", "view", T0, 0, eid=1), read_ms=T0)
    future = dataclasses.replace(record("u", "b", "view", 4_070_908_800_000, 1, eid=2), read_ms=T0 + minute)
    for ev in (first, future):
        assert apply_user_event(state, ev, "c") is Outcome.NEW
        prune_user(state, window)
    again = dataclasses.replace(first, offset=2, read_ms=T0 + 2 * minute)  # re-produced, read two minutes on
    assert apply_user_event(state, again, "c") is Outcome.DUPLICATE
    assert load_user(dump_user(state)) == state
    assert max(read for _, _, read in state.seen.values()) == (T0 + minute) // minute  # the far future moved nothing
    # Read an hour later: the window has passed, the id is forgotten and the re-sent event counts.
    late = dataclasses.replace(record("u", "c", "view", T0, 3, eid=3), read_ms=T0 + 61 * minute)
    apply_user_event(state, late, "c")
    prune_user(state, window)
    assert 1 not in state.seen and 3 in state.seen
    assert apply_user_event(state, dataclasses.replace(first, offset=4), "c") is Outcome.NEW
