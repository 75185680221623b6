"""Properties of the streaming state reducer (streams.state + streams.batch), checked against the
independent pandas ground truth of tests/streams/ground_truth.py.

Hypothesis draws a production log: distinct events of a few users in any time order, re-produced
duplicates (same event id at a later offset), read in batches of any size, with the worker crashing at
any batch either before its state was written (the batch is read again from the old state) or after
(the batch is read again from the new state), and every forward possibly delivered twice. Whatever
happens, the features must equal the ground truth over the distinct events: nothing lost, nothing
counted twice, nothing negative.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import pandas as pd
from hypothesis import example, given
from hypothesis import strategies as st

from streamrec.features import EVENT_TYPES, ITEM_COUNT_FEATURES, USER_COUNT_FEATURES
from streams.batch import (
    bundle_forwards,
    decode_bundle,
    encode_bundle,
    group_bundles_by_item,
    group_by_user,
    plan_item,
    plan_user,
)
from streams.state import (
    DedupeLimits,
    EventRecord,
    ItemState,
    UserState,
    dump_item,
    dump_user,
    item_features,
    load_item,
    load_user,
    user_features,
)
from tests.properties.budget import PROPERTY_SETTINGS
from tests.streams.ground_truth import item_truth, user_truth

T0 = 1_767_000_000_000
MINUTE = 60_000
DAY = 24 * 60 * MINUTE
ITEMS = 8
CATEGORIES = {f"i{n}": f"c{n % 3}" for n in range(ITEMS - 2)}  # the last two items are not in the catalog
LIMITS = DedupeLimits()  # the worker's defaults: 1000 ids, 7 days
SOURCE_PARTITIONS = 2
BY_ITEM_PARTITIONS = 3
#: Inside the de-duplication window: the property holds for any order and duplicates within it.
SPAN_MS = 6 * DAY
#: "Far future": what a client with a wrong clock (or year) sends, e.g. 2099-01-01.
FAR_FUTURE_MS = 4_070_908_800_000

CRASH = ("none", "before_state", "after_state")


@dataclass(frozen=True)
class Spec:
    user: int
    item: int
    etype: int
    ts_ms: int


@dataclass(frozen=True)
class Log:
    events: list[Spec]  # the distinct events, event id = index + 1
    order: list[int]  # production order: indices into events; repeats are re-produced duplicates
    cuts: list[int]  # batch sizes
    crashes: list[str]  # per batch
    double_forward: list[bool]  # per batch: the forwards are delivered twice (at-least-once)


def category(item: str) -> str:
    return CATEGORIES.get(item, "unknown")


@st.composite
def logs(draw: st.DrawFn, span_ms: int = SPAN_MS) -> Log:
    users = draw(st.integers(1, 3))
    spec = st.builds(
        Spec,
        user=st.integers(0, users - 1),
        item=st.integers(0, ITEMS - 1),
        etype=st.integers(0, len(EVENT_TYPES) - 1),
        ts_ms=st.integers(T0, T0 + span_ms),
    )
    events = draw(st.lists(spec, min_size=1, max_size=40))
    order = list(draw(st.permutations(range(len(events)))))
    for idx in draw(st.lists(st.integers(0, len(events) - 1), max_size=len(events))):
        first = order.index(idx)
        order.insert(draw(st.integers(first + 1, len(order))), idx)  # a duplicate, produced after the original
    cuts = draw(st.lists(st.integers(1, 12), min_size=1, max_size=len(order)))
    batches = len(cuts) + len(order)  # more than enough: every batch can crash once
    crashes = draw(st.lists(st.sampled_from(CRASH), min_size=batches, max_size=batches))
    doubles = draw(st.lists(st.booleans(), min_size=batches, max_size=batches))
    return Log(events, order, cuts, crashes, doubles)


#: When the worker reads the log: after every event of it happened, one message a second.
READ_FROM_MS = T0 + SPAN_MS + MINUTE


def produce(log: Log) -> list[EventRecord]:
    """The messages as the worker reads them: keyed by user (one partition each), offsets per partition, each
    with its read time (the broker's append time)."""
    next_offset: Counter[int] = Counter()
    out = []
    for k, idx in enumerate(log.order):
        spec = log.events[idx]
        partition = spec.user % SOURCE_PARTITIONS
        offset = next_offset[partition]
        next_offset[partition] += 1
        read_ms = READ_FROM_MS + 1000 * k
        out.append(
            EventRecord(idx + 1, f"u{spec.user}", f"i{spec.item}", spec.etype, spec.ts_ms, partition, offset, read_ms)
        )
    return out


def run_worker(log: Log) -> tuple[dict[str, UserState], dict[str, ItemState]]:
    """The worker's loop over the log, crashes and redeliveries included; state goes through its codecs."""
    messages = produce(log)
    durable: dict[str, bytes] = {}  # the user changelog
    item_durable: dict[str, bytes] = {}
    committed, batch_no, cut_no = 0, 0, 0
    while committed < len(messages):
        size = log.cuts[cut_no % len(log.cuts)]
        batch = messages[committed : committed + size]
        crash = log.crashes[batch_no % len(log.crashes)] if batch_no < len(log.crashes) else "none"
        double = log.double_forward[batch_no % len(log.double_forward)]
        batch_no += 1
        written: dict[str, bytes] = {}
        forwards = []
        for user, events in group_by_user(batch).items():
            state = load_user(durable[user]) if user in durable else None
            new_state, effect = plan_user(state, events, category, LIMITS)
            if effect.changed:
                written[user] = dump_user(new_state)
            forwards.extend(effect.forwards)
        # Forwards are sent before the state is durable, so even a crash before the write may have sent them.
        deliveries = 2 if double else 1
        for _ in range(deliveries):
            for bundles in bundle_forwards(forwards, BY_ITEM_PARTITIONS).values():
                decoded = [decode_bundle(encode_bundle(b)) for b in bundles]
                for item, entries in group_bundles_by_item(decoded).items():
                    prior = load_item(item_durable[item]) if item in item_durable else None
                    item_state, _ = plan_item(prior, entries)
                    item_durable[item] = dump_item(item_state)
        if crash == "before_state":
            continue  # nothing written, nothing committed: the batch is read again
        durable.update(written)
        if crash == "after_state":
            continue  # state written, offsets not committed: the batch is read again
        committed += len(batch)
        cut_no += 1
    return {u: load_user(raw) for u, raw in durable.items()}, {i: load_item(raw) for i, raw in item_durable.items()}


def distinct_frame(log: Log) -> pd.DataFrame:
    firsts = list(dict.fromkeys(log.order))  # first copies, in production order
    # One user's events are read in production order; users are independent, so this order is the truth's.
    rows = [log.events[idx] for idx in firsts]
    return pd.DataFrame(
        {
            "user_id": [f"u{s.user}" for s in rows],
            "item_id": [f"i{s.item}" for s in rows],
            "event_type": [EVENT_TYPES[s.etype] for s in rows],
            "ts_ms": pd.Series([s.ts_ms for s in rows], dtype="int64"),
        }
    )


def check_against_truth(log: Log) -> None:
    users, items = run_worker(log)
    frame = distinct_frame(log)
    truth_users = user_truth(frame, CATEGORIES)
    assert set(users) == set(truth_users)
    for user, state in users.items():
        feats, expected = user_features(state), truth_users[user]
        assert min(feats.counts) >= 0
        assert state.counted == expected["events"], f"{user}: duplicates counted or events lost"
        assert dict(zip(USER_COUNT_FEATURES, feats.counts, strict=True)) == {
            name: expected[name] for name in USER_COUNT_FEATURES
        }, user
        assert list(feats.recent_items) == expected["recent_items"], user
        assert feats.top_category == expected["top_category_24h"], user
        assert feats.last_event_ms == expected["last_event_ms"], user
    truth_items = item_truth(frame)
    assert set(items) == set(truth_items)
    per_item = frame["item_id"].value_counts().to_dict()
    for item, item_state in items.items():
        got, want = item_features(item_state), truth_items[item]
        assert min(got.counts) >= 0
        assert item_state.counted == per_item[item], f"{item}: forwarded events counted twice or lost"
        assert dict(zip(ITEM_COUNT_FEATURES, got.counts, strict=True)) == {
            name: want[name] for name in ITEM_COUNT_FEATURES
        }, item
        assert math.isclose(got.ctr_24h, float(want["ctr_24h"]))  # type: ignore[arg-type]
        assert math.isclose(got.trending, float(want["trending_score"]), rel_tol=1e-9)  # type: ignore[arg-type]
        assert math.isclose(got.popularity_24h, float(want["popularity_24h"]))  # type: ignore[arg-type]
        assert got.last_event_ms == want["last_event_ms"]


def check_nothing_counted_twice(log: Log) -> None:
    """Only the de-duplication invariants (what a skewed event must not break, whatever its windows do)."""
    users, items = run_worker(log)
    frame = distinct_frame(log)
    assert {u: s.counted for u, s in users.items()} == frame["user_id"].value_counts().to_dict(), "user counted"
    assert {i: s.counted for i, s in items.items()} == frame["item_id"].value_counts().to_dict(), "item counted"
    liked = frame[frame["event_type"] != "dislike"]["user_id"].value_counts().to_dict()
    for user, state in users.items():
        assert min(user_features(state).counts) >= 0
        assert len(state.recent) <= liked.get(user, 0), f"{user}: a duplicate entered recent items"


@PROPERTY_SETTINGS
@given(logs())
def test_out_of_order_duplicated_and_replayed_events_give_the_ground_truth(log: Log) -> None:
    check_against_truth(log)


# One event of the user far in the future (a wrong client clock), then a re-produced duplicate of an
# earlier event. The future event makes the user's latest event minute jump; the de-duplication ids expire by
# read time, which it does not move, so the duplicate that follows is still recognised.
SKEW_EXAMPLE = Log(
    events=[Spec(0, 0, 0, T0), Spec(0, 1, 0, FAR_FUTURE_MS)],
    order=[0, 1, 0],
    cuts=[1],
    crashes=["none"] * 4,
    double_forward=[False] * 4,
)


@st.composite
def skewed_logs(draw: st.DrawFn) -> Log:
    log = draw(logs())
    future = Spec(draw(st.integers(0, 2)), draw(st.integers(0, ITEMS - 1)), 0, FAR_FUTURE_MS)
    events = [*log.events, future]
    at = draw(st.integers(0, len(log.order)))
    order = [*log.order[:at], len(events) - 1, *log.order[at:]]
    return Log(events, order, log.cuts, log.crashes, log.double_forward)


@PROPERTY_SETTINGS
@example(SKEW_EXAMPLE)
@given(skewed_logs())
def test_a_far_future_event_never_lets_a_later_duplicate_count(log: Log) -> None:
    check_nothing_counted_twice(log)
