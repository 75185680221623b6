"""CatalogProducer refuses what cannot be a valid catalog record before anything is queued; settings load
from STREAMREC_CATALOG_*; the topic specs are compacted."""

from __future__ import annotations

import logging

import pytest

from streamrec.catalog.codec import CatalogKind
from streamrec.catalog.settings import CatalogSettings
from streamrec.catalog.topics import catalog_topics
from streamrec.client.catalog import CatalogProducer
from streamrec.errors import ConfigError, InvalidEventError
from streamrec.settings import KafkaSettings

# No broker listens here: every check below must fail before a message is queued.
NOWHERE = KafkaSettings(bootstrap_servers="127.0.0.1:9", delivery_timeout_ms=1000)


@pytest.fixture
def producer() -> CatalogProducer:
    silent = logging.getLogger("tests.catalog.nowhere")
    silent.addHandler(logging.NullHandler())
    silent.propagate = False  # librdkafka would log every refused connection
    made = CatalogProducer(NOWHERE, CatalogSettings(max_record_bytes=1024), logger=silent)
    made.queued = []  # type: ignore[attr-defined]

    def record(topic: str, key: bytes, value: bytes | None, timestamp_ms: int | None) -> None:
        made.queued.append((topic, key, value, timestamp_ms))  # type: ignore[attr-defined]

    made._produce = record  # type: ignore[method-assign]
    return made


def queued(producer: CatalogProducer) -> int:
    return len(producer.queued)  # type: ignore[attr-defined]


def test_records_over_the_size_limit_are_refused_before_queueing(producer: CatalogProducer) -> None:
    with pytest.raises(InvalidEventError, match="the limit is 1024"):
        producer.upsert_item(
            {"item_id": "a", "title": "t", "category": "c", "description": "d" * 2000, "updated_at": 1_767_000_000_000}
        )
    assert queued(producer) == 0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (
            lambda p: p.upsert_item(
                {"item_id": "a", "title": "t", "category": "c", "price": -1, "updated_at": 1_767_000_000_000}
            ),
            "price",
        ),
        (lambda p: p.upsert_item({"item_id": "a", "deleted": True, "updated_at": 1_767_000_000_000}), "deleted"),
        (lambda p: p.delete_item("a b"), "item_id"),
        (
            lambda p: p.upsert_user({"user_id": "u", "attributes": {"x": [1]}, "updated_at": 1_767_000_000_000}),
            "attributes",
        ),
        (lambda p: p.delete_user("{u}"), "user_id"),
        (lambda p: p.purge(CatalogKind.ITEMS, ""), "item_id"),
    ],
    ids=[
        "bad price",
        "tombstone through upsert",
        "bad id delete",
        "nested user attribute",
        "bad user id",
        "empty purge",
    ],
)
def test_invalid_writes_name_the_field_and_queue_nothing(producer: CatalogProducer, call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidEventError) as info:
        call(producer)
    assert info.value.field == field
    assert queued(producer) == 0


def test_valid_writes_are_queued_to_the_topic_of_their_kind(producer: CatalogProducer) -> None:
    item = producer.upsert_item({"item_id": "a", "title": "t", "category": "c", "updated_at": 1_767_000_000_000})
    tomb = producer.delete_item("b")
    user = producer.upsert_user({"user_id": "u", "updated_at": 1_767_000_000_000})
    assert [(topic, key) for topic, key, _, _ in producer.queued] == [  # type: ignore[attr-defined]
        ("items", b"a"),
        ("items", b"b"),
        ("users", b"u"),
    ]
    assert producer.queued[0][3] == item.updated_ms == 1_767_000_000_000  # type: ignore[attr-defined]
    assert b'"deleted":true' in producer.queued[1][2]  # type: ignore[attr-defined]
    assert (item.key, tomb.key, user.key) == ("a", "b", "u")
    assert producer.topic_for(CatalogKind.ITEMS) == "items" and producer.topic_for(CatalogKind.USERS) == "users"


def test_settings_come_from_the_catalog_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_CATALOG_ITEMS_TOPIC", "shop.items")
    monkeypatch.setenv("STREAMREC_CATALOG_USERS_PARTITIONS", "12")
    settings = CatalogSettings.load()
    assert (settings.items_topic, settings.users_partitions) == ("shop.items", 12)
    monkeypatch.setenv("STREAMREC_CATALOG_MAX_RECORD_BYTES", "10")
    with pytest.raises(ConfigError, match="STREAMREC_CATALOG_MAX_RECORD_BYTES"):
        CatalogSettings.load()


def test_items_and_users_topics_are_compacted_and_the_dlq_is_not() -> None:
    specs = {spec.name: dict(spec.config) for spec in catalog_topics(CatalogSettings())}
    assert specs["items"]["cleanup.policy"] == specs["users"]["cleanup.policy"] == "compact"
    assert "cleanup.policy" not in specs["catalog.dlq"]
    assert int(specs["items"]["max.message.bytes"]) > CatalogSettings().max_record_bytes
