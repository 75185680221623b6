"""What the demo shows once everything runs: API recommendations, live state, pushed recs, seen items dropping out,
and the live catalog: an item added through the API recommended, an item made unavailable gone.

Everything here talks to the running services the way a client application would: HTTP to the API, the SDK
to Kafka, and reads of the stores the worker writes (Bloom filters in Redis, Feast's online store). No
component is imported.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from streamrec.bloom import SeenItemStore
from streamrec.client import InteractionProducer, RecommendationConsumer
from streamrec.features import FEAST_USER_RECENT_ITEMS_FIELD, FEAST_USER_STREAM_VIEW
from streamrec.schemas import InteractionEvent, RecommendationMessage
from streamrec.settings import BloomSettings, KafkaSettings, RedisSettings

Say = Callable[[str], None]


@dataclass
class ApiClient:
    base_url: str
    api_key: str
    timeout_s: float = 5.0

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"X-API-Key": self.api_key}, timeout=self.timeout_s)

    def healthy(self) -> bool:
        try:
            with self._client() as client:
                return client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def recommendations(self, user_id: str | None, k: int = 5, **params: Any) -> dict[str, Any]:
        query: dict[str, Any] = {"k": k, **params}
        if user_id is not None:
            query["user_id"] = user_id
        with self._client() as client:
            response = client.get("/v1/recommendations", params=query)
        response.raise_for_status()
        return dict(response.json())

    def put_item(self, item: dict[str, Any]) -> int:
        """``PUT /v1/items/{item_id}``; answers 202 once Kafka has the record."""
        with self._client() as client:
            response = client.put(f"/v1/items/{item['item_id']}", json=item)
        return response.status_code

    def post_event(self, event: InteractionEvent) -> int:
        with self._client() as client:
            response = client.post(
                "/v1/events", content=event.to_json_bytes(), headers={"Content-Type": "application/json"}
            )
        return response.status_code


def format_items(result: dict[str, Any]) -> str:
    items = ", ".join(f"{i['item_id']} ({i['score']:.2f})" for i in result["items"])
    flags = f"  flags={result['flags']}" if result.get("flags") else ""
    return f"[{result.get('model_version') or 'no model'}] {items}{flags}"


def wait_for_pipeline(api: ApiClient, user_id: str, say: Say, timeout_s: float = 60.0) -> bool:
    """First requests load models and warm caches; wait until the Triton pipeline itself answers."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            result = api.recommendations(user_id, k=5)
        except httpx.HTTPError:
            result = {"flags": ["unreachable"]}
        if "popularity_fallback" not in result.get("flags", []):
            say(f"the Triton pipeline answers ({time.monotonic() - start:.1f}s after the first request)")
            return True
        time.sleep(0.5)
    say(f"the Triton pipeline did not answer within {timeout_s:.0f}s; results below are the flagged fallback")
    return False


def show_api_recommendations(api: ApiClient, users: list[str], say: Say) -> None:
    for user in users:
        result = api.recommendations(user, k=5)
        say(f"user {user:<8} {format_items(result)}")
    result = api.recommendations(None, k=5)
    say(f"anonymous     {format_items(result)}")


def wait_for_pushed_recommendations(
    kafka: KafkaSettings, user_id: str, item_ids: list[str], say: Say, timeout_s: float = 30.0
) -> RecommendationMessage | None:
    """Produce events for ``user_id`` and wait for the worker's refreshed recommendations on the topic."""
    events = [InteractionEvent.new(user_id, item, "click", device="mobile", session_id="demo") for item in item_ids]
    trigger_ids = {e.event_id for e in events}
    with RecommendationConsumer(kafka, group_id=f"streamrec-demo-{uuid.uuid4().hex[:8]}", user_ids={user_id}) as recs:
        recs.wait_for_assignment()
        sent_at = time.monotonic()
        with InteractionProducer(kafka) as producer:
            producer.send_many(events)
        say(f"produced {len(events)} click events for user {user_id}: {', '.join(item_ids)}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = recs.poll(0.5)
            if message is None:
                continue
            if message.trigger_event_id in trigger_ids:
                elapsed_ms = (time.monotonic() - sent_at) * 1000
                items = ", ".join(i.item_id for i in message.items[:5])
                flags = f" flags={message.flags}" if message.flags else ""
                say(f"recommendations arrived on the topic after {elapsed_ms:.0f} ms: {items}{flags}")
                return message
    say(f"no recommendation message for {user_id} within {timeout_s:.0f}s")
    return None


def show_seen_item_disappears(api: ApiClient, user_id: str, say: Say, timeout_s: float = 15.0) -> bool:
    """The user views their top recommendation; it must leave their next results (Bloom filter exclusion)."""
    before = api.recommendations(user_id, k=10)
    if not before["items"]:
        say("no recommendations to test with")
        return False
    top = before["items"][0]["item_id"]
    say(f"before: user {user_id} gets {format_items(before)}")
    status = api.post_event(InteractionEvent.new(user_id, top, "view", device="desktop", session_id="demo"))
    say(f"POST /v1/events: user {user_id} views {top} -> HTTP {status}")
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        after = api.recommendations(user_id, k=10)
        # Only an answer that really checked the Bloom filter proves the exclusion.
        trusted = not {"bloom_unavailable", "popularity_fallback"} & set(after.get("flags", []))
        if trusted and top not in {i["item_id"] for i in after["items"]}:
            say(f"after {1000 * (time.monotonic() - start):.0f} ms: {top} is gone: {format_items(after)}")
            return True
        time.sleep(0.1)
    say(f"{top} still recommended after {timeout_s:.0f}s")
    return False


@dataclass
class LiveUserState:
    """What the worker keeps for one user: Bloom membership of one item and a few Feast online features."""

    seen: bool
    recent_items: list[str]
    clicks_1h: int


def read_user_state(bloom: SeenItemStore, feast_store: Any, user_id: str, item_id: str) -> LiveUserState:
    view = FEAST_USER_STREAM_VIEW
    row = feast_store.get_online_features(
        features=[f"{view}:{FEAST_USER_RECENT_ITEMS_FIELD}", f"{view}:click_count_1h"],
        entity_rows=[{"user_id": user_id}],
    ).to_dict()
    return LiveUserState(
        seen=bloom.contains(user_id, [item_id])[0],
        recent_items=list(row[FEAST_USER_RECENT_ITEMS_FIELD][0] or []),
        clicks_1h=int(row["click_count_1h"][0] or 0),
    )


def show_event_updates_state(
    kafka: KafkaSettings,
    bloom: SeenItemStore,
    feast_store: Any,
    user_id: str,
    item_id: str,
    say: Say,
    timeout_s: float = 15.0,
) -> bool:
    """Produce one click and poll the stores until the worker has added it to the filter and the features."""
    before = read_user_state(bloom, feast_store, user_id, item_id)
    say(
        f"before: item {item_id} in user {user_id}'s Bloom filter: {before.seen}; Feast: clicks in the last hour "
        f"{before.clicks_1h}, recent items {before.recent_items[:5]}"
    )
    with InteractionProducer(kafka) as producer:
        sent_at = time.monotonic()
        producer.send(InteractionEvent.new(user_id, item_id, "click", device="mobile", session_id="demo"))
    while time.monotonic() - sent_at < timeout_s:
        after = read_user_state(bloom, feast_store, user_id, item_id)
        if after.seen and after.recent_items[:1] == [item_id] and after.clicks_1h > before.clicks_1h:
            say(
                f"after {1000 * (time.monotonic() - sent_at):.0f} ms: in the Bloom filter: {after.seen}; Feast: "
                f"clicks in the last hour {after.clicks_1h}, recent items {after.recent_items[:5]}"
            )
            return True
        time.sleep(0.02)
    say(f"the click on {item_id} did not reach the Bloom filter and Feast within {timeout_s:.0f}s")
    return False


def connect_bloom() -> SeenItemStore:
    return SeenItemStore.connect(RedisSettings.load(), BloomSettings.load())


def _item_ids(api: ApiClient, user_id: str, k: int) -> list[str]:
    return [i["item_id"] for i in api.recommendations(user_id, k=k)["items"]]


def _wait(done: Callable[[], bool], timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if done():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def show_item_added_live(
    api: ApiClient, users: list[str], content: dict[str, dict[str, Any]], say: Say, k: int = 100,
    timeout_s: float = 20.0,
) -> float | None:  # fmt: skip
    """A new item, with the content of the first user's top recommendation, goes in through the API; the time
    until it is in the top ``k`` of one of the users (it was never trained on: its vectors come from its
    content alone, and the ranker scores it as an unknown id)."""
    top = _item_ids(api, users[0], k)[0]
    like = content.get(top, {"title": f"like {top}", "category": "unknown"})
    new_id = f"new-{uuid.uuid4().hex[:6]}"
    item = {"item_id": new_id, **like, "updated_at": datetime.now(UTC).isoformat()}
    status = api.put_item(item)
    say(f"PUT /v1/items/{new_id} ({item['title'][:50]!r}, like user {users[0]}'s top item {top}) -> HTTP {status}")
    found: dict[str, int] = {}

    def recommended() -> bool:
        for user in users:
            answer = _item_ids(api, user, k)
            if new_id in answer:
                found[user] = answer.index(new_id) + 1
                return True
        return False

    took = _wait(recommended, timeout_s)
    if took is None:
        say(f"{new_id} is in none of the top {k} of users {', '.join(users)} after {timeout_s:.0f}s")
    else:
        ((user, rank),) = found.items()
        say(f"after {took * 1000:.0f} ms: {new_id} is recommended to user {user} (rank {rank} of {k})")
    return took


def show_item_made_unavailable(
    api: ApiClient, users: list[str], content: dict[str, dict[str, Any]], say: Say, k: int = 10,
    timeout_s: float = 10.0,
) -> float | None:  # fmt: skip
    """The first user's top item is marked ``available: false``; the time until no user's answer has it. It is
    made available again afterwards."""
    victim = _item_ids(api, users[0], k)[0]
    base = {"item_id": victim, **content.get(victim, {"title": victim, "category": "unknown"})}
    status = api.put_item({**base, "available": False, "updated_at": datetime.now(UTC).isoformat()})
    say(f"PUT /v1/items/{victim} with available: false -> HTTP {status}")
    took = _wait(lambda: all(victim not in _item_ids(api, u, k) for u in users), timeout_s)
    if took is None:
        say(f"{victim} is still recommended after {timeout_s:.0f}s")
    else:
        say(f"after {took * 1000:.0f} ms: {victim} is gone from the answers of users {', '.join(users)}")
    api.put_item({**base, "available": True, "updated_at": datetime.now(UTC).isoformat()})
    return took
