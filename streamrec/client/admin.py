"""Topic administration: create the project's topics idempotently."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streamrec.errors import StoreUnavailableError
from streamrec.settings import KafkaSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: tuple[tuple[str, str], ...] = ()


def project_topics(settings: KafkaSettings) -> list[TopicSpec]:
    return [
        TopicSpec(settings.interactions_topic, settings.interactions_partitions),
        TopicSpec(settings.recommendations_topic, settings.recommendations_partitions),
        TopicSpec(settings.dlq_topic, settings.dlq_partitions, (("retention.ms", str(14 * 24 * 3600 * 1000)),)),
    ]


_SILENT = logging.getLogger("streamrec.kafka.admin")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


def admin_client(settings: KafkaSettings) -> AdminClient:
    # librdkafka logs every refused connection to stderr; health checks must stay quiet.
    return AdminClient({**settings.client_config(), "logger": _SILENT})  # type: ignore[dict-item]


def existing_topics(settings: KafkaSettings, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count."""
    try:
        meta = admin_client(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise StoreUnavailableError(f"Kafka at {settings.bootstrap} unreachable: {exc}") from None
    return {name: len(t.partitions) for name, t in meta.topics.items()}


def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the missing topics; returns the names created. Existing topics are left as they are."""
    have = existing_topics(settings, timeout)
    missing = [s for s in specs if s.name not in have]
    if not missing:
        return []
    admin = admin_client(settings)  # must outlive the futures, or librdkafka tears the handle down
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, settings.replication_factor, config=dict(s.config)) for s in missing],
        operation_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StoreUnavailableError(f"could not create topic {name}: {exc}") from None
    return created


def delete_topics(settings: KafkaSettings, names: list[str], timeout: float = 30.0) -> None:
    if not names:
        return
    admin = admin_client(settings)
    futures = admin.delete_topics(names, operation_timeout=timeout)
    for fut in futures.values():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if "UNKNOWN_TOPIC" not in str(exc):
                raise


def consumer_lag(settings: KafkaSettings, group_id: str, topic: str, timeout: float = 10.0) -> int | None:
    """Messages of ``topic`` the group has not committed yet; None while the group has committed nothing."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = admin_client(settings)
    meta = admin.list_topics(topic, timeout=timeout)
    partitions = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
    try:
        committed_future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group_id, partitions)])
        committed = committed_future[group_id].result(timeout).topic_partitions
        ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions}, request_timeout=timeout)
        high = {tp.partition: fut.result(timeout).offset for tp, fut in ends.items()}
    except KafkaException as exc:
        raise StoreUnavailableError(f"cannot read the lag of group {group_id}: {exc}") from None
    if all(tp.offset < 0 for tp in committed):
        return None
    return sum(max(0, high[tp.partition] - max(tp.offset, 0)) for tp in committed)
