"""Catalog writes over the API: the core's validation with field-naming 4xx, path id against body id, and on a
real broker the records read back from the compacted topics keyed by id (the delete as its tombstone)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api.app import Services, create_app
from serving.api.delivery import KafkaDelivery
from serving.api.services import catalog_writer
from serving.settings import ApiSettings, ServingSettings
from streamrec.catalog.codec import CatalogKind
from streamrec.catalog.models import CatalogRecord
from tests.api.conftest import FakePipeline


def item(item_id: str = "sku-1", **overrides: Any) -> dict[str, Any]:
    body = {
        "item_id": item_id,
        "title": "Red shoe",
        "category": "shoes",
        "price": 49.5,
        "updated_at": "2026-11-30T10:00:00Z",
    }
    body.update(overrides)
    return body


class Written:
    def __init__(self) -> None:
        self.records: list[tuple[CatalogKind, CatalogRecord]] = []

    async def write(self, kind: CatalogKind, records: Any) -> None:
        self.records.extend((kind, r) for r in records)


@pytest.fixture
def written() -> Written:
    return Written()


@pytest.fixture
def api(fake: FakePipeline, written: Written) -> Any:
    def services() -> Services:
        return Services(fake.recommend, fake.events.append, {}, write_catalog=written.write)

    with TestClient(create_app(ApiSettings(auth_disabled=True), ServingSettings(), services)) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/v1/items/sku-1", item("sku-2"), "item_id"),
        ("PUT", "/v1/items/sku-1", item(price=-1), "price"),
        ("PUT", "/v1/items/sku-1", {k: v for k, v in item().items() if k != "title"}, "title"),
        ("PUT", "/v1/items/sku-1", item(colour="red"), "colour"),
        ("PUT", "/v1/items/sku-1", item(deleted=True), "deleted"),
        ("PUT", "/v1/items/sku-1", [item()], "<payload>"),
        ("POST", "/v1/items", [item(), item("sku-2", category="")], "[1].category"),
        ("POST", "/v1/items", [], "<payload>"),
        ("POST", "/v1/items", [item(f"s{i}") for i in range(501)], "<payload>"),
        ("PUT", "/v1/users/u1", {"user_id": "u2", "attributes": {}, "updated_at": "2026-11-30T10:00:00Z"}, "user_id"),
        (
            "PUT",
            "/v1/users/u1",
            {"user_id": "u1", "attributes": {"a": [1]}, "updated_at": "2026-11-30T10:00:00Z"},
            "attributes",
        ),
    ],
)
def test_bad_catalog_writes_name_the_field(
    api: TestClient, written: Written, method: str, path: str, body: Any, field: str
) -> None:
    response = api.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"].startswith(field), response.json()
    assert written.records == []


def test_bad_path_id_is_a_422(api: TestClient, written: Written) -> None:
    response = api.put("/v1/items/has space", json=item())
    assert response.status_code == 422 and response.json()["field"] == "path.item_id"


def test_catalog_writes_are_validated_and_written(api: TestClient, written: Written) -> None:
    assert api.put("/v1/items/sku-1", json=item()).status_code == 202
    missing = api.put("/v1/items/sku-1", json={k: v for k, v in item().items() if k != "item_id"})
    assert missing.status_code == 422 and missing.json()["field"] == "item_id"
    assert api.post("/v1/items", json=[item("a"), item("b")]).json() == {"accepted": 2, "ids": ["a", "b"]}
    assert api.delete("/v1/items/a").status_code == 202
    assert (
        api.put(
            "/v1/users/u1", json={"user_id": "u1", "attributes": {"tier": "gold"}, "updated_at": 1764500000000.0}
        ).status_code
        == 202
    )
    kinds = [(k.value, r.key, type(r).__name__) for k, r in written.records]
    assert kinds == [
        ("items", "sku-1", "CatalogItem"), ("items", "a", "CatalogItem"), ("items", "b", "CatalogItem"),
        ("items", "a", "ItemTombstone"), ("users", "u1", "UserProfile"),
    ]  # fmt: skip


@pytest.mark.slow
def test_catalog_writes_are_on_the_compacted_topics(
    stack: Any, unique_topics: Callable[..., str], fake: FakePipeline
) -> None:
    from confluent_kafka import Consumer

    items_topic, users_topic = unique_topics("items", 2), unique_topics("users", 2)
    delivery = KafkaDelivery.from_settings(stack.kafka, timeout_s=20.0)

    def services() -> Services:
        return Services(
            fake.recommend,
            fake.events.append,
            {},
            write_catalog=catalog_writer(lambda: delivery, items_topic, users_topic),
        )

    try:
        with TestClient(create_app(ApiSettings(auth_disabled=True), ServingSettings(), services)) as api:
            assert api.put("/v1/items/sku-9", json=item("sku-9")).status_code == 202
            assert api.delete("/v1/items/sku-9").status_code == 202
            assert (
                api.put(
                    "/v1/users/u9", json={"user_id": "u9", "attributes": {}, "updated_at": "2026-11-30T10:00:00Z"}
                ).status_code
                == 202
            )
    finally:
        delivery.close(timeout_s=5)
    consumer = Consumer(
        {**stack.kafka.client_config(), "group.id": f"t-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([items_topic, users_topic])
    got: list[tuple[str, bytes, dict[str, Any]]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < 3 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append((message.topic(), message.key(), json.loads(message.value())))
    finally:
        consumer.close()
    items = [(key, value.get("deleted", False)) for topic, key, value in got if topic == items_topic]
    assert items == [(b"sku-9", False), (b"sku-9", True)]
    assert [(key, value["user_id"]) for topic, key, value in got if topic == users_topic] == [(b"u9", "u9")]
