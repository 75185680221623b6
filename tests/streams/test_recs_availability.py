"""The worker's own popularity fallback (Triton down or not configured) never sends an item the live catalog
holds as unavailable to the recommendations topic; against the real Valkey."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streamrec.bloom import AsyncSeenItemStore
from streamrec.pipeline_client import LiveAvailability, RecommendRequest
from streamrec.settings import BloomSettings, RedisSettings
from streams.recs import StreamingPopularity, unavailable_in_current_export
from tests.conftest import StackHandle


def test_the_streaming_popularity_fallback_leaves_out_hidden_items(stack: StackHandle, unique_id: str) -> None:
    key = f"test:popularity:{unique_id}"

    async def run() -> tuple[list[str], list[str]]:
        store = await AsyncSeenItemStore.connect(RedisSettings.load(), BloomSettings())
        try:
            await store.client.zadd(key, {"a": 3.0, "b": 2.0, "c": 1.0})

            async def hidden() -> frozenset[str]:
                return frozenset({"b"})

            request = RecommendRequest(user_id=f"u-{unique_id}", k=3)
            plain = await StreamingPopularity(store, key, candidates=10).recommend(request)
            filtered = await StreamingPopularity(store, key, candidates=10, hidden=hidden).recommend(request)
            await store.client.delete(key)
            return plain.items, filtered.items
        finally:
            await store.close()

    plain, filtered = asyncio.run(run())
    assert plain == ["a", "b", "c"]
    assert filtered == ["a", "c"]


def test_without_a_published_export_nothing_is_hidden(tmp_path: Path) -> None:
    availability = LiveAvailability("redis://127.0.0.1:1/0")
    try:
        assert unavailable_in_current_export(availability, tmp_path) == frozenset()
    finally:
        availability.close()
