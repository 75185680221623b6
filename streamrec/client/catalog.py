"""Catalog SDK: items and user profiles to their compacted topics, keyed by id, idempotent, acks=all.

Deletes are explicit tombstone records (``{"item_id": ..., "deleted": true, "updated_at": ...}``), never a bare
Kafka null: compaction keeps the latest value per key, so the tombstone is what stays under the id, and its
``updated_at`` lets last-writer-wins order it against upserts that arrive late. :meth:`CatalogProducer.purge`
writes the Kafka null that finally lets compaction drop a deleted id; send it only once every reader has seen
the tombstone (readers ignore nulls: see :func:`streamrec.catalog.codec.decode_message`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streamrec.catalog.codec import CatalogKind, decode_message, validate_item, validate_record, validate_user
from streamrec.catalog.models import CatalogItem, CatalogRecord, ItemTombstone, UserProfile, UserTombstone
from streamrec.catalog.settings import CatalogSettings
from streamrec.catalog.state import CatalogState
from streamrec.client.consumer import consumer_config
from streamrec.client.dlq import DeadLetterRole, DeadLetterWriter
from streamrec.client.producer import DeliveringProducer, DeliveryCallback, DeliveryStats, producer_config
from streamrec.errors import InvalidEventError, StoreUnavailableError
from streamrec.settings import KafkaSettings


def kind_of(record: CatalogRecord) -> CatalogKind:
    return CatalogKind.ITEMS if isinstance(record, CatalogItem | ItemTombstone) else CatalogKind.USERS


class CatalogProducer(DeliveringProducer):
    """Sends catalog records to the ``items`` / ``users`` topics (key: the id; record timestamp: updated_at).

    Records are validated (and size-checked) before they are queued; :meth:`flush` (also called by
    :meth:`close` and the context manager) waits for every delivery report and raises
    :class:`DeliveryError` if any failed.
    """

    noun = "catalog records"

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        catalog: CatalogSettings | None = None,
        on_delivery: DeliveryCallback | None = None,
        **config_overrides: Any,
    ) -> None:
        self.kafka = kafka or KafkaSettings.load()
        self.catalog = catalog or CatalogSettings.load()
        self.stats = DeliveryStats()
        self._user_callback = on_delivery
        self._producer = Producer(producer_config(self.kafka, **config_overrides))

    def topic_for(self, kind: CatalogKind) -> str:
        return self.catalog.items_topic if kind is CatalogKind.ITEMS else self.catalog.users_topic

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self.stats.record(err)
        if self._user_callback is not None:
            self._user_callback(err, msg)

    def send(self, record: CatalogRecord) -> None:
        """Queue a validated record; raises InvalidEventError if its encoding exceeds the size limit."""
        value = record.to_json_bytes()
        if len(value) > self.catalog.max_record_bytes:
            raise InvalidEventError(
                "<payload>", f"record is {len(value)} bytes; the limit is {self.catalog.max_record_bytes}"
            )
        self._produce(self.topic_for(kind_of(record)), record.key.encode(), value, record.updated_ms)

    def send_many(self, records: Iterable[CatalogRecord]) -> int:
        count = 0
        for record in records:
            self.send(record)
            count += 1
        return count

    def upsert_item(self, data: CatalogItem | Mapping[str, Any]) -> CatalogItem:
        """Validate (a mapping, naming the field on error) and send an item."""
        record = data if isinstance(data, CatalogItem) else validate_item(dict(data))
        if not isinstance(record, CatalogItem):
            raise InvalidEventError("deleted", "use delete_item to delete an item")
        self.send(record)
        return record

    def delete_item(self, item_id: str, updated_at: datetime | int | None = None) -> ItemTombstone:
        """Send the tombstone of an item (``updated_at``: now when not given)."""
        record = validate_item({"item_id": item_id, "deleted": True, "updated_at": updated_at or datetime.now(UTC)})
        if not isinstance(record, ItemTombstone):  # unreachable: "deleted" selects the tombstone model
            raise InvalidEventError("deleted", "not a tombstone")
        self.send(record)
        return record

    def upsert_user(self, data: UserProfile | Mapping[str, Any]) -> UserProfile:
        record = data if isinstance(data, UserProfile) else validate_user(dict(data))
        if not isinstance(record, UserProfile):
            raise InvalidEventError("deleted", "use delete_user to delete a user profile")
        self.send(record)
        return record

    def delete_user(self, user_id: str, updated_at: datetime | int | None = None) -> UserTombstone:
        record = validate_user({"user_id": user_id, "deleted": True, "updated_at": updated_at or datetime.now(UTC)})
        if not isinstance(record, UserTombstone):  # unreachable: "deleted" selects the tombstone model
            raise InvalidEventError("deleted", "not a tombstone")
        self.send(record)
        return record

    def purge(self, kind: CatalogKind, record_id: str) -> None:
        """Kafka null under the id: compaction then drops the id's history (send after its tombstone is read)."""
        validate_record_id(kind, record_id)
        self._produce(self.topic_for(kind), record_id.encode(), None, None)

    def _produce(self, topic: str, key: bytes, value: bytes | None, timestamp_ms: int | None) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, on_delivery=self._on_delivery, timestamp=timestamp_ms or 0
                )
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve delivery reports to make room
        self._producer.poll(0)


def validate_record_id(kind: CatalogKind, record_id: str) -> None:
    """An id the contract accepts (same rule as records' ids); raises InvalidEventError."""
    validate_record(kind, {kind.id_field: record_id, "deleted": True, "updated_at": datetime.now(UTC)})


class CatalogRejects:
    """The consumer side's validation: a message from a catalog topic is a record, a purge marker, or a reject.

    A writer sends a reject to the catalog dead-letter topic with the reason, the original bytes and its
    position, in the same dead-letter format as rejected interaction events; an observer only counts it
    (the catalog sync is the one writer, so each reject is dead-lettered once).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        catalog: CatalogSettings,
        producer: Producer | None,
        component: str,
        role: DeadLetterRole = DeadLetterRole.WRITER,
    ) -> None:
        self.catalog = catalog
        self.rejected = 0
        self._dlq = DeadLetterWriter(component, role, topic=catalog.dlq_topic, producer=producer)

    def kind_of_topic(self, topic: str) -> CatalogKind:
        if topic == self.catalog.items_topic:
            return CatalogKind.ITEMS
        if topic == self.catalog.users_topic:
            return CatalogKind.USERS
        raise InvalidEventError("<topic>", f"{topic} is not a catalog topic")

    def accept(self, msg: Message) -> CatalogRecord | None:
        """The valid record, or None (purge marker, or rejected: sent to the dead-letter topic by a writer)."""
        topic = str(msg.topic())
        key, value = msg.key(), msg.value()
        try:
            record = decode_message(self.kind_of_topic(topic), key, value, self.catalog.max_record_bytes)
        except InvalidEventError as exc:
            self.rejected += 1
            self._dlq.publish(exc, value, key, topic, int(msg.partition() or 0), int(msg.offset() or 0))
            return None
        return record


def read_catalog(
    kafka: KafkaSettings, catalog: CatalogSettings, kind: CatalogKind, timeout_s: float = 120.0
) -> tuple[CatalogState[Any], int]:
    """The whole catalog of one kind: its compacted topic read from the start up to the end it had when the
    read began, reduced (last ``updated_at`` wins). Returns (state, rejected); rejects are only counted
    (the catalog sync dead-letters them).
    """
    topic = catalog.items_topic if kind is CatalogKind.ITEMS else catalog.users_topic
    conf = consumer_config(kafka, f"streamrec-catalog-read-{uuid.uuid4().hex}", **{"enable.auto.commit": False})
    consumer = Consumer(conf)
    rejects = CatalogRejects(kafka, catalog, None, "catalog-reader", DeadLetterRole.OBSERVER)
    state: CatalogState[Any] = CatalogState()
    try:
        try:
            meta = consumer.list_topics(topic, timeout=10.0).topics[topic]
            if meta.error is not None:
                raise StoreUnavailableError(f"cannot read topic {topic}: {meta.error.str()}")
            partitions = sorted(meta.partitions)
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10.0) for p in partitions}
        except KafkaException as exc:
            raise StoreUnavailableError(f"Kafka at {kafka.bootstrap} unreachable: {exc}") from None
        pending = {p: high for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise StoreUnavailableError(f"reading {topic} took longer than {timeout_s:.0f}s")
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None and (record := rejects.accept(msg)) is not None:
                    state.apply(record)
            # By position, not by the last offset seen: compaction leaves gaps in the offsets.
            for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= pending[tp.partition]:
                    del pending[tp.partition]
    finally:
        consumer.close()
    return state, rejects.rejected
