"""The catalog against the real broker: compacted topics, idempotent re-import, last-writer-wins whatever the
produce order, purge markers ignored, and rejects in the catalog dead-letter topic with the reason."""

from __future__ import annotations

import csv
import json
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer

from streamrec.catalog import cli
from streamrec.catalog.codec import CatalogKind
from streamrec.catalog.models import CatalogItem
from streamrec.catalog.settings import CatalogSettings
from streamrec.catalog.state import CatalogState
from streamrec.catalog.topics import cleanup_policy, ensure_catalog_topics
from streamrec.client.admin import delete_topics
from streamrec.client.catalog import CatalogProducer, CatalogRejects
from streamrec.errors import ConfigError
from streamrec.settings import KafkaSettings
from tests.conftest import StackHandle

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "shop_items.csv"
T0 = 1_767_000_000_000


@pytest.fixture
def catalog(stack: StackHandle, unique_id: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Catalog topics of this test only (also in the environment, for the CLI), deleted afterwards."""
    names = {"items_topic": f"test.items.{unique_id}", "users_topic": f"test.users.{unique_id}"}
    names["dlq_topic"] = f"test.catalog-dlq.{unique_id}"
    for field, value in names.items():
        monkeypatch.setenv(f"STREAMREC_CATALOG_{field.upper()}", value)
    settings = CatalogSettings.load(items_partitions=3, users_partitions=3)
    yield settings
    delete_topics(stack.kafka, list(names.values()))


def drain(kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 60.0) -> list[Message]:
    consumer = Consumer({**kafka.client_config(), "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out += [m for m in consumer.consume(500, 0.5) if m.error() is None]
        for m in consumer.consume(500, 1.0):  # nothing more than expected
            if m.error() is None:
                out.append(m)
    finally:
        consumer.close()
    return out


def reduce_topic(stack: StackHandle, catalog: CatalogSettings, expected: int) -> CatalogState:  # type: ignore[type-arg]
    """Read the topic as a consumer would (validation, DLQ) and reduce it."""
    producer = Producer(stack.kafka.client_config())
    rejects = CatalogRejects(stack.kafka, catalog, producer, "test")
    state: CatalogState = CatalogState()  # type: ignore[type-arg]
    for msg in sorted(drain(stack.kafka, catalog.items_topic, expected), key=lambda m: (m.partition(), m.offset())):
        record = rejects.accept(msg)
        if record is not None:
            state.apply(record)
    assert producer.flush(60) == 0
    assert rejects.rejected == 0
    return state


def test_catalog_topics_are_created_compacted_and_a_plain_existing_one_is_refused(
    stack: StackHandle, catalog: CatalogSettings, unique_topics
) -> None:
    created = ensure_catalog_topics(stack.kafka, catalog)
    assert sorted(created) == sorted([catalog.items_topic, catalog.users_topic, catalog.dlq_topic])
    assert cleanup_policy(stack.kafka, catalog.items_topic) == "compact"
    assert cleanup_policy(stack.kafka, catalog.users_topic) == "compact"
    assert ensure_catalog_topics(stack.kafka, catalog) == []
    plain = unique_topics("plain-items")
    with pytest.raises(ConfigError, match="cleanup.policy=compact"):
        ensure_catalog_topics(stack.kafka, catalog.model_copy(update={"items_topic": plain}))


def test_importing_the_same_file_twice_yields_the_same_compacted_state(
    stack: StackHandle, catalog: CatalogSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "shop.csv"
    with SAMPLE.open() as src, source.open("w", newline="") as dst:
        rows = list(csv.DictReader(src))
        writer = csv.DictWriter(dst, [*rows[0].keys(), "updated_at"])
        writer.writeheader()
        for n, row in enumerate(rows):
            writer.writerow({**row, "updated_at": T0 + n})
    assert cli.main(["import", str(source), "--no-progress"]) == 0
    assert f"sent {len(rows)} items records" in capsys.readouterr().out
    once = reduce_topic(stack, catalog, len(rows))
    assert cli.main(["import", str(source), "--no-progress"]) == 0
    twice = reduce_topic(stack, catalog, 2 * len(rows))
    assert twice.records == once.records
    assert sorted(once.live()) == sorted(row["item_id"] for row in rows)
    mug = once.live()["mug-stoneware-blue"]
    assert isinstance(mug, CatalogItem) and mug.price == 14.0 and mug.attributes["volume_ml"] == 350


def test_the_latest_updated_at_wins_whatever_order_the_records_were_produced_in(
    stack: StackHandle, catalog: CatalogSettings
) -> None:
    ensure_catalog_topics(stack.kafka, catalog)
    base = {"title": "Mug", "category": "kitchen"}
    with CatalogProducer(stack.kafka, catalog) as producer:
        producer.upsert_item({**base, "item_id": "a", "price": 3.0, "updated_at": T0 + 20})
        producer.upsert_item({**base, "item_id": "a", "price": 1.0, "updated_at": T0 + 10})  # late, stale
        producer.upsert_item({**base, "item_id": "b", "updated_at": T0 + 5})
        producer.delete_item("b", updated_at=T0 + 30)
        producer.upsert_item({**base, "item_id": "b", "title": "stale", "updated_at": T0 + 25})  # after the delete
        producer.upsert_item({**base, "item_id": "c", "updated_at": T0})
        producer.purge(CatalogKind.ITEMS, "d")  # a purge marker: ignored by readers, no reject
    assert producer.stats.delivered == 7 and producer.stats.failed == 0
    messages = drain(stack.kafka, catalog.items_topic, 7)
    keyed = {m.key() for m in messages}
    assert keyed == {b"a", b"b", b"c", b"d"}
    assert {m.timestamp()[1] for m in messages if m.key() == b"c"} == {T0}, "record timestamp is updated_at"
    state = reduce_topic(stack, catalog, 7)
    assert sorted(state.live()) == ["a", "c"]
    assert state.live()["a"].price == 3.0
    assert "b" in state.tombstones()


def test_invalid_catalog_messages_go_to_the_catalog_dlq_with_the_reason(
    stack: StackHandle, catalog: CatalogSettings
) -> None:
    ensure_catalog_topics(stack.kafka, catalog)
    good = CatalogItem(item_id="a", title="Mug", category="kitchen", updated_at=T0)
    raw = Producer(stack.kafka.client_config())
    bad = [
        (b"a", b"{oops", "<payload>", "not valid JSON"),
        (
            b"b",
            json.dumps({"item_id": "b", "title": "t", "category": "k", "price": -1, "updated_at": T0}).encode(),
            "price",
            "greater than or equal to 0",
        ),
        (b"z", good.to_json_bytes(), "<key>", "does not match item_id"),
    ]
    errors: list[object] = []
    for key, value, _, _ in bad:
        raw.produce(catalog.items_topic, key=key, value=value, on_delivery=lambda err, _msg: errors.append(err))
    raw.produce(catalog.items_topic, key=b"a", value=good.to_json_bytes(), on_delivery=lambda e, _m: errors.append(e))
    assert raw.flush(60) == 0 and errors == [None] * (len(bad) + 1), errors
    # A compacted topic refuses a message without a key at the broker (with the rest of its batch, hence
    # sent alone): it never reaches a consumer.
    keyless: list[object] = []
    raw.produce(catalog.items_topic, value=good.to_json_bytes(), on_delivery=lambda err, _msg: keyless.append(err))
    assert raw.flush(60) == 0
    assert len(keyless) == 1 and "INVALID_RECORD" in str(keyless[0])

    dlq_producer = Producer(stack.kafka.client_config())
    rejects = CatalogRejects(stack.kafka, catalog, dlq_producer, "catalog-test")
    drained = drain(stack.kafka, catalog.items_topic, len(bad) + 1, timeout_s=120)
    assert len(drained) == len(bad) + 1, [(m.key(), (m.value() or b"")[:40]) for m in drained]
    accepted = [rejects.accept(m) for m in drained]
    assert dlq_producer.flush(60) == 0
    assert [r for r in accepted if r is not None] == [good]
    assert rejects.rejected == len(bad)
    letters = [json.loads(m.value()) for m in drain(stack.kafka, catalog.dlq_topic, len(bad), timeout_s=120)]
    assert len(letters) == len(bad)
    by_field = sorted((letter["field"], letter["source_topic"], letter["rejected_by"]) for letter in letters)
    assert by_field == sorted((field, catalog.items_topic, "catalog-test") for _, _, field, _ in bad)
    for _, _, field, reason in bad:
        assert any(letter["field"] == field and reason in letter["reason"] for letter in letters), (field, reason)


def test_snapshot_from_the_topics_is_the_reduced_catalog_the_trainer_reads(
    stack: StackHandle, catalog: CatalogSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamrec.archive import read_items, read_users
    from streamrec.catalog.snapshot import latest_snapshot, read_snapshot

    ensure_catalog_topics(stack.kafka, catalog)
    base = {"category": "kitchen", "price": 2.0}
    with CatalogProducer(stack.kafka, catalog) as producer:
        for n in range(20):
            producer.upsert_item({**base, "item_id": f"i{n}", "title": f"Item {n}", "updated_at": T0 + n})
        producer.upsert_item({**base, "item_id": "i3", "title": "Item 3, renamed", "updated_at": T0 + 100})
        producer.upsert_item({**base, "item_id": "i4", "title": "stale", "updated_at": T0 - 1})
        producer.delete_item("i5", updated_at=T0 + 100)
        producer.upsert_user({"user_id": "u1", "attributes": {"segment": "gold"}, "updated_at": T0})
        producer.delete_user("u2", updated_at=T0)
    raw = Producer(stack.kafka.client_config())
    raw.produce(catalog.items_topic, key=b"i99", value=b"{oops")
    assert raw.flush(60) == 0

    assert cli.main(["snapshot", "--archive", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "19 items (1 deleted), 1 users (1 deleted); 1 invalid records left out" in out, out
    assert drain(stack.kafka, catalog.dlq_topic, 1, timeout_s=5) == []  # the catalog sync is the one DLQ writer
    ref = latest_snapshot(tmp_path)
    items = read_items(ref.path).set_index("item_id")
    assert sorted(items.index) == sorted(f"i{n}" for n in range(20) if n != 5)
    assert items.loc["i3", "text"] == "Item 3, renamed" and items.loc["i4", "text"] == "Item 4"
    assert read_users(ref.path)["user_id"].tolist() == ["u1"]
    restored, _ = read_snapshot(ref)
    assert "i5" in restored.tombstones()
