"""The live stream on a real Kafka broker: a list produced to the recommendations topic reaches the user's open
stream through the API's own consumer group, and once every stream closed that group has no member left."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from serving.api.app import Services, create_app
from serving.api.live import KafkaRecommendationFeed, kafka_feed_factory
from serving.api.settings import UiSettings
from serving.settings import ApiSettings, ServingSettings
from streamrec.client.admin import admin_client
from streamrec.pipeline_client import RecommendRequest, RecommendResult
from streamrec.security import hash_api_key
from tests.ui.conftest import SseReader, message, serve

KEY = "kafka-stream-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY}

pytestmark = pytest.mark.slow


async def _recommend(request: RecommendRequest) -> RecommendResult:
    return RecommendResult([], [], "", [])


def _members(stack: Any, group_id: str) -> list[Any]:
    admin = admin_client(stack.kafka)  # kept referenced until the answer is in: its futures die with it
    futures = admin.describe_consumer_groups([group_id], request_timeout=20)
    return list(futures[group_id].result(timeout=30).members)


def _wait(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def test_pushed_list_reaches_the_stream_and_the_group_is_left_empty(
    stack: Any, unique_topics: Callable[..., str], unique_id: str
) -> None:
    from confluent_kafka import Producer

    topic = unique_topics("recs", 3)
    kafka = stack.kafka.model_copy(update={"recommendations_topic": topic})
    feeds: list[KafkaRecommendationFeed] = []
    make = kafka_feed_factory(kafka, f"test-live-{unique_id}")

    def factory() -> KafkaRecommendationFeed:
        feeds.append(make())
        return feeds[-1]

    def services() -> Services:
        return Services(_recommend, lambda e: None, live_feed=factory)

    ui = UiSettings(idle_close_s=0.5, keepalive_s=1.0)
    app = create_app(ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))]), ServingSettings(), services, ui_settings=ui)
    producer = Producer(kafka.client_config())
    with serve(app) as url:
        readers = [SseReader(f"{url}/v1/recommendations/stream?user_id={u}", AUTH).open() for u in ("ann", "ben")]
        try:
            for reader in readers:
                status = reader.next("status", 30).data["kafka"]
                while status != "ok":
                    status = reader.next("status", 30).data["kafka"]
            assert len(feeds) == 1 and _members(stack, feeds[0].group_id)
            for user, items in (("ben", ["b1"]), ("ann", ["a1", "a2"])):
                producer.produce(topic, key=user.encode(), value=message(user, items).model_dump_json().encode())
            producer.flush(10)
            ann = readers[0].next("recommendations", 30).data
            ben = readers[1].next("recommendations", 30).data
            assert [i["item_id"] for i in ann["items"]] == ["a1", "a2"] and ann["user_id"] == "ann"
            assert [i["item_id"] for i in ben["items"]] == ["b1"]
        finally:
            for reader in readers:
                reader.close()
        hub = app.state.context.hub
        _wait(lambda: hub.feeds_open == 0)
        assert _members(stack, feeds[0].group_id) == []
