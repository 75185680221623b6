"""``POST /v1/events`` answers 202 only once Kafka acknowledged: read back from a real broker; a broker that
never answers gives a 503 naming the reason; a full producer queue a 503 with Retry-After, without blocking
the event loop."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api.app import Services, create_app
from serving.api.delivery import KafkaDelivery
from serving.api.services import event_sender
from serving.settings import ApiSettings, ServingSettings
from streamrec.settings import KafkaSettings
from tests.api.conftest import FakePipeline

DEAD_BROKER = KafkaSettings(bootstrap_servers="127.0.0.1:1")  # nothing listens on port 1


def event(user: str = "u1", item: str = "i1") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "item_id": item,
        "event_type": "click",
        "timestamp": "2026-11-28T10:00:00Z",
        "context": {"device": "mobile", "session_id": "s1"},
    }


@pytest.fixture
def api_over(fake: FakePipeline) -> Iterator[Callable[[KafkaDelivery, str], TestClient]]:
    deliveries: list[KafkaDelivery] = []
    clients: list[TestClient] = []

    def build(delivery: KafkaDelivery, topic: str) -> TestClient:
        deliveries.append(delivery)

        def services() -> Services:
            return Services(fake.recommend, event_sender(lambda: delivery, topic), {})

        client = TestClient(create_app(ApiSettings(auth_disabled=True), ServingSettings(), services))
        clients.append(client.__enter__())
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)
    for delivery in deliveries:
        delivery.close(timeout_s=0)


def test_unacknowledged_events_are_a_503_naming_the_reason(api_over: Any) -> None:
    api = api_over(KafkaDelivery.from_settings(DEAD_BROKER, timeout_s=1.0), "interactions")
    start = time.monotonic()
    response = api.post("/v1/events", json=[event(), event(item="i2")])
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "unavailable" and body["field"] == "<payload>"
    assert body["reason"].startswith("Kafka did not acknowledge the events: ") and "timed out" in body["reason"]
    assert time.monotonic() - start < 10


def test_a_full_producer_queue_is_a_503_with_retry_after_and_the_loop_keeps_serving(api_over: Any) -> None:
    delivery = KafkaDelivery.from_settings(
        DEAD_BROKER, timeout_s=5.0, retry_after_s=2, **{"queue.buffering.max.messages": 1}
    )
    api = api_over(delivery, "interactions")
    results: dict[str, Any] = {}

    async def both() -> None:
        import httpx

        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            first = asyncio.create_task(client.post("/v1/events", json=event()))  # fills the queue, waits
            await asyncio.sleep(0.3)
            started = time.monotonic()
            results["second"] = await client.post("/v1/events", json=event(item="i2"))
            results["health"] = await client.get("/healthz")
            results["took"] = time.monotonic() - started
            results["first"] = await first

    asyncio.run(both())
    second = results["second"]
    assert second.status_code == 503 and second.headers["Retry-After"] == "2", second.text
    assert "queue full" in second.json()["reason"]
    assert results["health"].status_code == 200 and results["took"] < 1.0  # answered while the first waits
    assert results["first"].status_code == 503


@pytest.mark.slow
def test_accepted_events_are_on_the_topic(stack: Any, unique_topics: Callable[..., str], api_over: Any) -> None:
    from confluent_kafka import Consumer

    topic = unique_topics("api-events", 2)
    api = api_over(KafkaDelivery.from_settings(stack.kafka, timeout_s=20.0), topic)
    sent = [event(user=f"u{i}", item=f"i{i}") for i in range(5)]
    response = api.post("/v1/events", json=sent)
    assert response.status_code == 202, response.text
    consumer = Consumer(
        {**stack.kafka.client_config(), "group.id": f"t-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got: dict[str, bytes] = {}
    deadline = time.monotonic() + 30
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got[json.loads(message.value())["event_id"]] = message.key()
    finally:
        consumer.close()
    assert got == {e["event_id"]: e["user_id"].encode() for e in sent}
