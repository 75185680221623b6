"""The live catalog contract: entries round-trip exactly; against the real Valkey, a reader started at any time
gets everything, a running reader gets only what changed, and one that fell behind a trimmed stream resyncs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from streamrec.catalog.live import (
    LiveCatalogReader,
    LiveCatalogWriter,
    LiveItem,
    LiveKeys,
    LiveVectors,
    decode_item,
    encode_item,
    latest_by_item,
    live_versions,
    retire_versions,
)
from streamrec.errors import DataError
from tests.conftest import StackHandle


def vectors(seed: int, image_dim: int = 0) -> LiveVectors:
    rng = np.random.default_rng(seed)
    return LiveVectors(
        rng.normal(size=8).astype(np.float32),
        rng.normal(size=3).astype(np.float32),
        rng.normal(size=5).astype(np.float32),
        rng.normal(size=image_dim).astype(np.float32),
    )


def test_entry_round_trips_with_and_without_vectors() -> None:
    with_vectors = LiveItem("sku-1", 2466, True, 1_767_000_000_000, 3, vectors(1, image_dim=4))
    back = decode_item(encode_item(with_vectors))
    assert back.vectors is not None and with_vectors.vectors is not None
    for got, want in zip(back.vectors.parts(), with_vectors.vectors.parts(), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    assert (back.item_id, back.index, back.available, back.updated_ms, back.category_idx) == (
        "sku-1", 2466, True, 1_767_000_000_000, 3,
    )  # fmt: skip
    removed = LiveItem("sku-2", 7, False, 5)
    assert decode_item(encode_item(removed)) == removed


@pytest.mark.parametrize("raw", [b"", b"\x00\x00\x00\x02{}", b"\x00\x00\x00\x02[]abc", b"\xff\xff\xff\xffzz"])
def test_garbage_is_a_data_error(raw: bytes) -> None:
    with pytest.raises(DataError, match="not a live catalog entry"):
        decode_item(raw)


def test_truncated_vectors_are_a_data_error() -> None:
    raw = encode_item(LiveItem("a", 9, True, 1, 0, vectors(2)))
    with pytest.raises(DataError, match="do not match"):
        decode_item(raw[:-4])


def test_latest_by_item_keeps_the_newest_update() -> None:
    a1, a2, b = LiveItem("a", 1, True, 10), LiveItem("a", 1, False, 20), LiveItem("b", 2, True, 5)
    assert latest_by_item([a2, b, a1]) == {"a": a2, "b": b}


@pytest.mark.integration
def test_reader_bootstraps_then_follows_changes_and_resyncs_after_trim(stack: StackHandle, unique_id: str) -> None:
    client = redis.Redis.from_url(stack.redis.effective_url)
    keys = LiveKeys.for_version(f"v-{unique_id}")
    writer = LiveCatalogWriter(client, keys, n_export_items=100, max_changes=10)
    try:
        first, second = writer.index_for("new-1"), writer.index_for("new-2")
        assert (first, second, writer.index_for("new-1")) == (101, 102, 101)  # stable per id
        writer.publish([LiveItem("new-1", first, True, 1, 0, vectors(3)), LiveItem("old-5", 5, False, 1)])

        late = LiveCatalogReader(client, keys)
        assert {i.item_id for i in late.poll()} == {"new-1", "old-5"}  # first poll = everything so far
        assert late.poll(block_ms=10) == []

        writer.publish([LiveItem("old-5", 5, True, 2)])
        changed = late.poll(block_ms=10)
        assert [(i.item_id, i.available) for i in changed] == [("old-5", True)]

        # Far more changes than the stream keeps: a reader that has not polled meanwhile reads the hash again.
        for n in range(300):
            writer.publish([LiveItem(f"bulk-{n}", writer.index_for(f"bulk-{n}"), True, 3)])
        assert int(client.xlen(keys.changes)) < 300  # type: ignore[arg-type]
        after = late.poll(block_ms=10)
        assert len({i.item_id for i in after}) == 302  # new-1, old-5 and every bulk item
    finally:
        client.delete(keys.state, keys.changes, keys.index, keys.next_index)
        client.close()


@pytest.mark.integration
def test_a_corrupt_entry_is_left_out_and_a_zero_wait_poll_returns_at_once(stack: StackHandle, unique_id: str) -> None:
    client = redis.Redis.from_url(stack.redis.effective_url)
    keys = LiveKeys.for_version(f"bad-{unique_id}")
    writer = LiveCatalogWriter(client, keys, n_export_items=10)
    try:
        writer.publish([LiveItem("good-1", 11, True, 1, 0, vectors(4)), LiveItem("good-2", 3, False, 1)])
        client.hset(keys.state, "broken", b"\x00\x00\x00\x09not json!")
        client.xadd(keys.changes, {"item": "broken"})
        reader = LiveCatalogReader(client, keys)
        assert {i.item_id for i in reader.bootstrap()} == {"good-1", "good-2"}
        writer.publish([LiveItem("good-2", 3, True, 2)])
        client.xadd(keys.changes, {"item": "broken"})
        assert [(i.item_id, i.available) for i in reader.poll(block_ms=10)] == [("good-2", True)]
        began = time.monotonic()
        assert reader.poll(block_ms=0) == []
        assert time.monotonic() - began < 1.0
    finally:
        client.delete(keys.state, keys.changes, keys.index, keys.next_index)
        client.close()


@pytest.mark.integration
def test_retiring_deletes_the_live_catalogs_of_versions_not_kept_and_nothing_else(
    stack: StackHandle, unique_id: str
) -> None:
    client = redis.Redis.from_url(stack.redis.effective_url)
    prefix, other = f"retire-{unique_id}", f"other-{unique_id}"
    try:
        for version in ("v1", "v2", "v3"):
            writer = LiveCatalogWriter(client, LiveKeys.for_version(version, prefix), n_export_items=10)
            writer.publish([LiveItem("new", writer.index_for("new"), True, 1, 0, vectors(3))])
        LiveCatalogWriter(client, LiveKeys.for_version("v1", other), n_export_items=10).index_for("x")
        assert live_versions(client, prefix) == {"v1", "v2", "v3"}
        assert retire_versions(client, {"v3", "v9"}, prefix) == ["v1", "v2"]
        assert live_versions(client, prefix) == {"v3"}
        assert LiveCatalogReader(client, LiveKeys.for_version("v3", prefix)).bootstrap()  # the kept one is whole
        assert live_versions(client, other) == {"v1"}  # another prefix: untouched
        assert retire_versions(client, {"v3"}, prefix) == []
    finally:
        for p in (prefix, other):
            for version in live_versions(client, p):
                client.delete(*LiveKeys.for_version(version, p).all)
        client.close()
