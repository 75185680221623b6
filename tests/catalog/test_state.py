"""Last-writer-wins: the reducer agrees with a pandas ground truth, and any permutation or duplication of
the same records gives the same catalog."""

from __future__ import annotations

import json
import random
from typing import Any

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.catalog.codec import CatalogKind, validate_record
from streamrec.catalog.models import CatalogItem, ItemTombstone, UserProfile
from streamrec.catalog.state import CatalogState, Outcome, canonical_bytes, merge_states, reduce_records
from tests.catalog.ground_truth import final_catalog, live_ids

T0 = 1_767_000_000_000


def item(item_id: str, ms: int, **fields: Any) -> CatalogItem:
    record = validate_record(
        CatalogKind.ITEMS, {"item_id": item_id, "title": "t", "category": "c", "updated_at": ms, **fields}
    )
    assert isinstance(record, CatalogItem)
    return record


def tombstone(item_id: str, ms: int) -> ItemTombstone:
    record = validate_record(CatalogKind.ITEMS, {"item_id": item_id, "deleted": True, "updated_at": ms})
    assert isinstance(record, ItemTombstone)
    return record


def frame(records: list[CatalogItem | ItemTombstone]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [r.key for r in records],
            "updated_ms": [r.updated_ms for r in records],
            "deleted": [isinstance(r, ItemTombstone) for r in records],
            "content": [
                json.dumps(r.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))
                for r in records
            ],
        }
    )


def random_records(seed: int, n: int, ids: int, span_ms: int) -> list[CatalogItem | ItemTombstone]:
    rng = random.Random(seed)
    out: list[CatalogItem | ItemTombstone] = []
    for _ in range(n):
        key = f"i{rng.randrange(ids)}"
        ms = T0 + rng.randrange(span_ms)  # a small span: many records share an updated_at
        if rng.random() < 0.2:
            out.append(tombstone(key, ms))
        else:
            out.append(item(key, ms, price=rng.choice([None, 1.0, 2.5]), available=rng.random() < 0.8))
    return out


def contents(state: dict[str, CatalogItem | ItemTombstone]) -> dict[str, str]:
    return {key: canonical_bytes(rec).decode() for key, rec in state.items()}


def test_reducer_matches_the_pandas_ground_truth_on_random_histories() -> None:
    for seed in range(5):
        records = random_records(seed, n=3000, ids=200, span_ms=50)
        state: CatalogState[CatalogItem | ItemTombstone] = CatalogState()
        state.apply_all(records)
        assert contents(state.records) == final_catalog(frame(records))
        assert set(state.live()) == live_ids(frame(records))


def test_newer_upsert_wins_whatever_the_arrival_order() -> None:
    old, new = item("a", T0, price=1.0), item("a", T0 + 1, price=2.0)
    for order in ([old, new], [new, old]):
        assert reduce_records(order)["a"] == new


def test_a_stale_upsert_replayed_after_a_delete_does_not_bring_the_item_back() -> None:
    state: CatalogState[CatalogItem | ItemTombstone] = CatalogState()
    assert state.apply(item("a", T0)) is Outcome.CREATED
    assert state.apply(tombstone("a", T0 + 10)) is Outcome.DELETED
    assert state.apply(item("a", T0 + 5, title="stale")) is Outcome.UNCHANGED
    assert "a" not in state.live() and "a" in state.tombstones()
    assert state.apply(item("a", T0 + 11, title="back")) is Outcome.CREATED
    assert state.live()["a"].title == "back"


def test_at_equal_updated_at_a_delete_beats_an_upsert_and_upserts_tie_break_by_content() -> None:
    up_a, up_b, gone = item("a", T0, title="aaa"), item("a", T0, title="bbb"), tombstone("a", T0)
    assert reduce_records([up_a, up_b])["a"] == reduce_records([up_b, up_a])["a"] == up_b
    assert reduce_records([up_a, gone, up_b])["a"] == gone
    state: CatalogState[CatalogItem | ItemTombstone] = CatalogState()
    state.apply(up_b)
    assert state.apply(up_b) is Outcome.UNCHANGED, "a duplicate changes nothing"


def test_sub_millisecond_differences_do_not_reorder_records_after_a_round_trip() -> None:
    def at(stamp: str, title: str) -> CatalogItem:
        record = validate_record(
            CatalogKind.ITEMS, {"item_id": "a", "title": title, "category": "c", "updated_at": stamp}
        )
        assert isinstance(record, CatalogItem)
        return record

    # 0.9 ms later on the client, but the wire carries milliseconds: both are the same instant.
    later_in_memory, earlier_in_memory = at("2025-12-29T09:20:00.000900Z", "a"), at("2025-12-29T09:20:00.000100Z", "b")
    in_memory = reduce_records([later_in_memory, earlier_in_memory])["a"]
    from streamrec.catalog.codec import decode_record, encode_record

    wire = [decode_record(CatalogKind.ITEMS, encode_record(r)) for r in (later_in_memory, earlier_in_memory)]
    assert in_memory == reduce_records(wire)["a"]  # type: ignore[arg-type]
    assert in_memory.title == "b"


ids = st.sampled_from(["a", "b", "c", "d"])
times = st.integers(min_value=T0, max_value=T0 + 3)
upserts = st.builds(
    lambda key, ms, title, price, available: item(key, ms, title=title, price=price, available=available),
    ids,
    times,
    st.sampled_from(["x", "y", "z"]),
    st.one_of(st.none(), st.sampled_from([0.0, 1.5, 9.99])),
    st.booleans(),
)
deletes = st.builds(tombstone, ids, times)
histories = st.lists(st.one_of(upserts, deletes), max_size=40)


@settings(max_examples=150, deadline=None)
@given(histories, st.randoms(use_true_random=False), st.lists(st.integers(min_value=0, max_value=39), max_size=20))
def test_any_permutation_or_duplication_gives_the_same_catalog(
    records: list[CatalogItem | ItemTombstone], rng: random.Random, dup_positions: list[int]
) -> None:
    expected = reduce_records(records)
    shuffled = list(records)
    rng.shuffle(shuffled)
    duplicated = shuffled + [shuffled[p % len(shuffled)] for p in dup_positions] if shuffled else []
    rng.shuffle(duplicated)
    assert reduce_records(duplicated) == expected
    assert contents(expected) == final_catalog(frame(records))


@settings(max_examples=100, deadline=None)
@given(histories, st.integers(min_value=0, max_value=40))
def test_merging_two_partial_catalogs_equals_reducing_everything(
    records: list[CatalogItem | ItemTombstone], cut: int
) -> None:
    left, right = reduce_records(records[:cut]), reduce_records(records[cut:])
    assert merge_states(left, right) == merge_states(right, left) == reduce_records(records)


def test_user_profiles_follow_the_same_rule() -> None:
    old = validate_record(CatalogKind.USERS, {"user_id": "u", "attributes": {"tier": "a"}, "updated_at": T0 + 5})
    new = validate_record(CatalogKind.USERS, {"user_id": "u", "attributes": {"tier": "b"}, "updated_at": T0 + 6})
    assert isinstance(old, UserProfile) and isinstance(new, UserProfile)
    state: CatalogState[Any] = CatalogState()
    state.apply_all([new, old])
    assert state.live()["u"].attributes == {"tier": "b"}
