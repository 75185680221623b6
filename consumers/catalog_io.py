"""I/O adapters of the catalog sync: Kafka in (from the start, every time), dead letters, Redis out, Feast out.

Each adapter implements one port of :mod:`consumers.catalog_sync`; the sync itself holds no client.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from consumers.catalog_plan import (
    item_content_row,
    row_timestamp,
    user_profile_row,
)
from streamrec.catalog.live import LiveCatalogWriter, LiveItem, LiveKeys, LiveVectors, decode_item, encode_item
from streamrec.catalog.models import ItemRecord, UserRecord
from streamrec.catalog.settings import CatalogSettings
from streamrec.client.consumer import consumer_config
from streamrec.client.dlq import DeadLetterRole, DeadLetterWriter, parse_dead_letter
from streamrec.client.producer import producer_config
from streamrec.errors import ConfigError, InvalidEventError, StoreUnavailableError
from streamrec.features import (
    FEAST_ITEM_CONTENT_VIEW,
    FEAST_ITEM_ENTITY_KEY,
    FEAST_USER_ENTITY_KEY,
    FEAST_USER_PROFILE_VIEW,
)
from streamrec.settings import KafkaSettings

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

COMPONENT = "streamrec-catalog-sync"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One message of a catalog topic, as read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
    except KafkaException as exc:
        raise StoreUnavailableError(f"Kafka unreachable listing {topic}: {exc}") from None
    if meta.error is not None:
        raise StoreUnavailableError(f"cannot read topic {topic}: {meta.error.str()}")
    return sorted(meta.partitions)


class KafkaCatalogFeed:
    """Every partition of the ``items`` and ``users`` topics, assigned from the beginning: each start replays
    the whole compacted catalog (no committed offsets, no consumer group membership)."""

    def __init__(self, kafka: KafkaSettings, catalog: CatalogSettings, timeout_s: float = 10.0) -> None:
        conf = consumer_config(
            kafka,
            f"{COMPONENT}-{uuid.uuid4().hex[:12]}",  # assign() only: the group id is never joined nor committed
            **{"enable.auto.commit": False, "enable.auto.offset.store": False},
        )
        self.consumer = Consumer(conf)
        self.topics = (catalog.items_topic, catalog.users_topic)
        assignment, self.ends = [], {}
        for topic in self.topics:
            for p in _partitions(self.consumer, topic, timeout_s):
                assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
                try:
                    low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                except KafkaException as exc:
                    raise StoreUnavailableError(f"Kafka unreachable reading {topic}: {exc}") from None
                if high > low:
                    self.ends[(topic, p)] = high
        self.consumer.assign(assignment)
        self._caught_up = not self.ends

    def poll(self, max_messages: int, timeout_s: float) -> list[RawRecord]:
        out = []
        for msg in self.consumer.consume(max_messages, timeout_s):
            if msg.error() is not None:
                log.warning("catalog topic read error: %s", msg.error())
                continue
            out.append(
                RawRecord(str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0), msg.key(), msg.value())
            )
        return out

    def caught_up(self) -> bool:
        """Everything the topics held at start has been read (by position: compaction leaves offset gaps)."""
        if not self._caught_up:
            positions = self.consumer.position([TopicPartition(t, p) for t, p in self.ends])
            self._caught_up = all(tp.offset >= self.ends[(tp.topic, tp.partition)] for tp in positions)
        return self._caught_up

    def close(self) -> None:
        self.consumer.close()


def read_dead_lettered(
    kafka: KafkaSettings, topic: str, rejected_by: str, timeout_s: float = 60.0
) -> set[tuple[str, int, int]]:
    """Positions (topic, partition, offset) this component has already dead-lettered: a replay from the start
    of the catalog topics writes no second dead letter for them."""
    consumer = Consumer(
        consumer_config(kafka, f"{rejected_by}-dlq-{uuid.uuid4().hex[:12]}", **{"enable.auto.commit": False})
    )
    seen: set[tuple[str, int, int]] = set()
    try:
        pending = {}
        for p in _partitions(consumer, topic, timeout_s):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                pending[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise StoreUnavailableError(f"reading {topic} took longer than {timeout_s:.0f}s")
            for msg in consumer.consume(1000, 0.5):
                value = msg.value()
                if msg.error() is not None or value is None:
                    continue
                try:
                    letter = parse_dead_letter(value)
                except InvalidEventError:
                    continue  # not ours to judge: another writer's record
                if letter.rejected_by == rejected_by:
                    seen.add((letter.source_topic, letter.source_partition, letter.source_offset))
            for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= pending[tp.partition]:
                    del pending[tp.partition]
    finally:
        consumer.close()
    return seen


class CatalogDeadLetters:
    """The one dead-letter writer of the catalog topics (core builder, catalog DLQ), once per rejected position."""

    def __init__(
        self, kafka: KafkaSettings, catalog: CatalogSettings, already: set[tuple[str, int, int]] | None = None
    ) -> None:
        self.producer = Producer(producer_config(kafka))
        self.writer = DeadLetterWriter(
            COMPONENT, DeadLetterRole.WRITER, topic=catalog.dlq_topic, producer=self.producer
        )
        self.already = already if already is not None else set()

    def reject(self, error: InvalidEventError, raw: RawRecord) -> bool:
        """Dead-letter a reject; False when this position was dead-lettered before (a replay)."""
        position = (raw.topic, raw.partition, raw.offset)
        if position in self.already:
            self.writer.rejected[error.code] += 1
            return False
        self.writer.publish(error, raw.value, raw.key, raw.topic, raw.partition, raw.offset)
        self.already.add(position)
        return True

    def flush(self, timeout_s: float = 30.0) -> None:
        if self.producer.flush(timeout_s):
            raise StoreUnavailableError("dead letters of rejected catalog records undelivered")


def _digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


class RedisLiveCatalog:
    """The live catalog of one export version in Redis, as its single writer sees it.

    Loaded once on start: the indices handed out, the digest of every published entry (an identical entry
    is not published again: a replay changes nothing and readers re-read nothing) and the vectors of the
    items embedded before, with the fingerprint of their content (``{base}:content``, kept by the writer
    only) so that unchanged content is not embedded again.
    """

    def __init__(self, client: redis.Redis, version: str, n_export_items: int, prefix: str | None = None) -> None:
        keys = LiveKeys.for_version(version) if prefix is None else LiveKeys.for_version(version, prefix)
        self.client = client
        self.keys = keys
        self.content_key = f"{keys.base}:content"
        self.writer = LiveCatalogWriter(client, keys, n_export_items)
        self.indices: dict[str, int] = {}
        self.published: dict[str, bytes] = {}
        self.vectors: dict[str, tuple[str, LiveVectors]] = {}
        self._load()

    def _load(self) -> None:
        def text(raw: bytes | str) -> str:
            return raw.decode() if isinstance(raw, bytes) else raw

        for item_id, idx in self.client.hscan_iter(self.keys.index, count=5000):
            self.indices[text(item_id)] = int(idx)
        fingerprints = {text(k): text(v) for k, v in self.client.hscan_iter(self.content_key, count=5000)}
        for _, raw in self.client.hscan_iter(self.keys.state, count=2000):
            entry = decode_item(cast(bytes, raw))
            self.published[entry.item_id] = _digest(cast(bytes, raw))
            fingerprint = fingerprints.get(entry.item_id)
            if entry.vectors is not None and fingerprint is not None:
                self.vectors[entry.item_id] = (fingerprint, entry.vectors)

    def index_for(self, item_id: str) -> int:
        got = self.indices.get(item_id)
        if got is None:
            got = self.indices[item_id] = self.writer.index_for(item_id)
        return got

    def publish(self, items: Sequence[LiveItem], fingerprints: dict[str, str]) -> list[LiveItem]:
        """Publish the entries that differ from what is published; returns those published."""
        changed: list[LiveItem] = []
        digests: dict[str, bytes] = {}
        for item in items:
            digest = _digest(encode_item(item))
            if self.published.get(item.item_id) != digest:
                changed.append(item)
                digests[item.item_id] = digest
        if fingerprints:
            self.client.hset(self.content_key, mapping=fingerprints)
        self.writer.publish(changed)
        self.published.update(digests)
        for item in changed:
            if item.vectors is not None and item.item_id in fingerprints:
                self.vectors[item.item_id] = (fingerprints[item.item_id], item.vectors)
        return changed


# -------------------------------------------------------------------------------------------------- Feast


def _value_encoder(dtype: Any) -> Callable[[Any], Any]:
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.types import Float32, Float64, Int32, Int64, String

    if dtype == String:
        return lambda v: ValueProto(string_val=str(v))
    if dtype == Float64:
        return lambda v: ValueProto(double_val=float(v))
    if dtype == Float32:
        return lambda v: ValueProto(float_val=float(v))
    if dtype == Int64:
        return lambda v: ValueProto(int64_val=int(v))
    if dtype == Int32:
        return lambda v: ValueProto(int32_val=int(v))
    raise ConfigError(f"the catalog sync writes no Feast type {dtype}", source="feature_repo")


class FeastCatalogViews:
    """Writes the ``item_content`` and ``user_profile`` online rows through Feast's public ``OnlineStore``
    interface (``online_write_batch`` of the store class the repository's ``online_store.type`` names).

    Rows are stamped with the record's ``updated_at`` (a tombstone just after): the online store keeps a row only
    when it is newer than the stored one, so a replay rewrites nothing and a late stale record changes nothing.
    """

    def __init__(self, store: Any) -> None:
        from feast.infra.online_stores.helpers import get_online_store_from_config
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        self.store = store
        self.online_store: Any = get_online_store_from_config(store.config.online_store)
        self._entity_key, self._value = EntityKey, ValueProto
        views = {fv.name: fv for fv in store.list_feature_views()}
        missing = [name for name in (FEAST_ITEM_CONTENT_VIEW, FEAST_USER_PROFILE_VIEW) if name not in views]
        if missing:
            raise ConfigError(f"Feast views {missing} are not registered; run: streamrec features apply")
        self.item_view, self.user_view = views[FEAST_ITEM_CONTENT_VIEW], views[FEAST_USER_PROFILE_VIEW]
        self.item_encoders = [(f.name, _value_encoder(f.dtype)) for f in self.item_view.features]
        self.user_encoders = [(f.name, _value_encoder(f.dtype)) for f in self.user_view.features]
        self.profile_fields = [name for name, _ in self.user_encoders]

    def _write(self, view: Any, join_key: str, rows: Iterable[tuple[str, dict[str, Any], Any]],
               encoders: list[tuple[str, Callable[[Any], Any]]]) -> int:  # fmt: skip
        data = [
            (
                self._entity_key(join_keys=[join_key], entity_values=[self._value(string_val=key)]),
                {name: enc(values[name]) for name, enc in encoders if name in values},
                ts,
                None,
            )
            for key, values, ts in rows
        ]
        if data:
            self.online_store.online_write_batch(self.store.config, view, data, progress=None)
        return len(data)

    def write_items(self, records: Sequence[ItemRecord]) -> int:
        rows = [(r.item_id, item_content_row(r), row_timestamp(r)) for r in records]
        return self._write(self.item_view, FEAST_ITEM_ENTITY_KEY, rows, self.item_encoders)

    def write_users(self, records: Sequence[UserRecord]) -> int:
        rows = [(r.user_id, user_profile_row(r, self.profile_fields), row_timestamp(r)) for r in records]
        return self._write(self.user_view, FEAST_USER_ENTITY_KEY, rows, self.user_encoders)
