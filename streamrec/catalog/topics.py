"""The catalog's compacted topics: their specs, creation and a check that an existing one is compacted."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource, ResourceType

from streamrec.catalog.settings import CatalogSettings
from streamrec.client.admin import TopicSpec, admin_client, ensure_topics
from streamrec.errors import ConfigError, StoreUnavailableError
from streamrec.settings import KafkaSettings

DLQ_RETENTION_MS = 14 * 24 * 3600 * 1000


def compacted_config(catalog: CatalogSettings) -> tuple[tuple[str, str], ...]:
    """Compaction keeps the latest record per key, which is the whole catalog, forever."""
    return (
        ("cleanup.policy", "compact"),
        ("min.compaction.lag.ms", str(catalog.min_compaction_lag_ms)),
        ("delete.retention.ms", str(catalog.delete_retention_ms)),
        ("max.message.bytes", str(catalog.max_record_bytes + 4096)),
    )


def catalog_topics(catalog: CatalogSettings) -> list[TopicSpec]:
    compacted = compacted_config(catalog)
    return [
        TopicSpec(catalog.items_topic, catalog.items_partitions, compacted),
        TopicSpec(catalog.users_topic, catalog.users_partitions, compacted),
        TopicSpec(catalog.dlq_topic, catalog.dlq_partitions, (("retention.ms", str(DLQ_RETENTION_MS)),)),
    ]


def ensure_catalog_topics(kafka: KafkaSettings, catalog: CatalogSettings, timeout: float = 30.0) -> list[str]:
    """Create the missing catalog topics (compacted); raises ConfigError if an existing one is not compacted."""
    created = ensure_topics(kafka, catalog_topics(catalog), timeout)
    for name in (catalog.items_topic, catalog.users_topic):
        policy = cleanup_policy(kafka, name, timeout)
        if "compact" not in policy.split(","):
            raise ConfigError(
                f"topic {name} exists with cleanup.policy={policy}; the catalog needs cleanup.policy=compact "
                f"(kafka-configs --alter --entity-type topics --entity-name {name} "
                "--add-config cleanup.policy=compact)",
                source="catalog topics",
            )
    return created


def cleanup_policy(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> str:
    """The topic's cleanup.policy; waits (up to ``timeout``) for a just-created topic to become known."""
    admin = admin_client(kafka)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    deadline = time.monotonic() + timeout
    while True:
        try:
            configs = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
            break
        except KafkaException as exc:
            if "UNKNOWN_TOPIC" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.2)  # the controller has created it; this broker's metadata has not caught up yet
                continue
            raise StoreUnavailableError(f"cannot read the configuration of topic {topic}: {exc}") from None
    entry = configs.get("cleanup.policy")
    return str(entry.value) if entry is not None else "delete"
