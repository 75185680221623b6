"""Debounced refresh schedule (pure) and the refresher's batching, with a fake source."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from streamrec.pipeline_client import RecommendRequest, RecommendResult
from streamrec.schemas.codec import decode_recommendation
from streamrec.schemas.events import EventContext
from streams.recs import AutoSource, PipelineSource, Refresher, RefreshSchedule, Trigger

CTX = EventContext(device="mobile", session_id="s")


def trigger(n: int) -> Trigger:
    return Trigger(f"00000000-0000-4000-8000-{n:012d}", CTX, 1_767_000_000_000 + n, 0.0)


def test_first_event_refreshes_at_once_then_at_most_once_per_interval_with_the_latest_trigger() -> None:
    schedule = RefreshSchedule(debounce_s=2.0)
    schedule.notify("u", trigger(1), now=10.0)
    assert schedule.pop_due(10.0) == [("u", trigger(1))]
    schedule.notify("u", trigger(2), now=10.5)
    schedule.notify("u", trigger(3), now=11.0)
    assert schedule.pop_due(11.9) == []
    assert schedule.next_due() == 12.0
    assert schedule.pop_due(12.0) == [("u", trigger(3))], "one refresh, carrying the newest trigger"
    schedule.notify("v", trigger(4), now=12.1)
    schedule.notify("u", trigger(5), now=15.0)  # interval over: immediate again
    assert sorted(schedule.pop_due(15.0)) == [("u", trigger(5)), ("v", trigger(4))]
    assert schedule.pop_due(100.0) == []


class FakeSource:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def recommend(self, request: RecommendRequest) -> RecommendResult:
        raise AssertionError("the refresher asks in batches")

    async def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[RecommendResult | BaseException]:
        self.calls.append([r.user_id or "" for r in requests])
        return [
            RuntimeError("boom")
            if r.user_id == "bad"
            else RecommendResult(["i1", "i2"], [0.5, 0.25], "v9", [], source="fake")
            for r in requests
        ]

    async def close(self) -> None:
        return None


def test_refresher_publishes_one_message_per_due_user_and_survives_a_failed_user() -> None:
    source = FakeSource()
    published: dict[str, bytes] = {}

    async def publish(user_id: str, payload: bytes) -> None:
        published[user_id] = payload

    async def run() -> None:
        refresher = Refresher(source, publish, k=2, debounce_s=2.0, concurrency=1)
        refresher.notify_many([("a", trigger(1)), ("bad", trigger(2)), ("b", trigger(3))])
        for _ in range(100):
            if len(published) == 2:
                break
            await asyncio.sleep(0.01)
        await refresher.close()

    asyncio.run(run())
    assert source.calls == [["a", "bad", "b"]]
    assert set(published) == {"a", "b"}
    message = decode_recommendation(published["b"])
    assert [(i.item_id, i.rank) for i in message.items] == [("i1", 1), ("i2", 2)]
    assert message.trigger_event_id == trigger(3).event_id and message.model_version == "v9"


def test_pipeline_source_speaks_the_pipeline_clients_request_and_result() -> None:
    class FakeClient:
        def __init__(self, ready: bool) -> None:
            self.requests: list[object] = []
            self._ready = ready

        async def ready(self) -> bool:
            return self._ready

        async def recommend(self, request: object) -> object:
            self.requests.append(request)
            return RecommendResult(["i7", "i3"], [0.9, 0.4], "v20261128", ["unknown_user"])

        async def close(self) -> None:
            return None

    async def run(ready: bool) -> tuple[list[RecommendResult | BaseException], FakeClient, FakeSource]:
        client, fallback = FakeClient(ready), FakeSource()
        source = AutoSource(PipelineSource(client), fallback)  # type: ignore[arg-type]
        results = await source.recommend_many([RecommendRequest("u1", 2, "mobile", 1_767_000_000_000)])
        return results, client, fallback

    results, client, fallback = asyncio.run(run(ready=True))
    assert results == [RecommendResult(["i7", "i3"], [0.9, 0.4], "v20261128", ["unknown_user"], source="triton")]
    (request,) = client.requests
    assert request == RecommendRequest("u1", 2, "mobile", 1_767_000_000_000), "the request goes through unchanged"
    assert fallback.calls == []

    results, client, fallback = asyncio.run(run(ready=False))
    assert client.requests == [] and fallback.calls == [["u1"]], "not ready: the popularity fallback answers"


def test_waiting_users_coalesce_and_new_users_beyond_the_bound_are_dropped() -> None:
    schedule = RefreshSchedule(debounce_s=2.0, max_pending=2)
    schedule.notify("u", trigger(1), now=10.0)
    schedule.pop_due(10.0)
    assert schedule.notify("u", trigger(2), now=10.5) == "scheduled"  # due at 12.0
    assert schedule.notify("u", trigger(3), now=10.6) == "coalesced"
    assert schedule.notify("v", trigger(4), now=10.7) == "scheduled"
    assert schedule.notify("w", trigger(5), now=10.8) == "dropped", "two users wait already"
    assert schedule.pop_due(12.0, limit=1) == [("v", trigger(4))], "earliest first, at most the limit"
    assert schedule.pop_due(12.0) == [("u", trigger(3))]


def test_refreshes_start_at_most_at_the_rate_bound_and_count_what_they_skip() -> None:
    source = FakeSource()
    published: list[str] = []
    skipped: dict[str, int] = {}

    async def publish(user_id: str, payload: bytes) -> None:
        published.append(user_id)

    async def run() -> float:
        refresher = Refresher(
            source,
            publish,
            k=2,
            debounce_s=2.0,
            concurrency=1,  # request batches of 16: the bucket holds one batch
            max_per_s=100.0,
            on_skipped=lambda reason, n: skipped.__setitem__(reason, skipped.get(reason, 0) + n),
        )
        began = asyncio.get_running_loop().time()
        refresher.notify_many([(f"u{n}", trigger(n)) for n in range(56)] + [("u0", trigger(99)), ("bad", trigger(98))])
        while (len(published) < 56 or "failed" not in skipped) and asyncio.get_running_loop().time() - began < 10:
            await asyncio.sleep(0.005)
        took = asyncio.get_running_loop().time() - began
        await refresher.close()
        return took

    took = asyncio.run(run())
    assert sorted(published) == sorted(f"u{n}" for n in range(56))
    assert took >= (57 - 16) / 100.0 * 0.9, "beyond the first batch, 100 refreshes per second at most"
    assert skipped == {"coalesced": 1, "failed": 1}
    assert max(len(call) for call in source.calls) <= 16


def test_a_hanging_recommender_never_slows_ingest() -> None:
    from streamrec.schemas.events import InteractionEvent
    from tests.streams.test_processors import APPEND, message, processor

    class Hanging(FakeSource):
        async def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[RecommendResult | BaseException]:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

    async def publish(user_id: str, payload: bytes) -> None:
        raise AssertionError("nothing is published")

    async def run() -> tuple[float, int]:
        proc = processor()
        refresher = Refresher(Hanging(), publish, k=2, debounce_s=0.0, concurrency=1)
        proc.refresher = refresher
        began = asyncio.get_running_loop().time()
        for batch in range(20):
            events = [InteractionEvent.new(f"u{n}", "i1", "view", timestamp=APPEND) for n in range(50)]
            await proc.process([message(e, batch * 50 + n) for n, e in enumerate(events)], lambda: None)
        took = asyncio.get_running_loop().time() - began
        await refresher.close()
        bloom: Any = proc.bloom
        return took, len(bloom.added)

    took, users = asyncio.run(run())
    assert users == 50 and took < 5.0, "1,000 events processed while the recommender hangs"
