"""Settings of the confluent-kafka consumers (env prefix ``STREAMREC_CONSUMERS_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from streamrec.settings import ComponentSettings


class ConsumersSettings(ComponentSettings):
    """The event archiver, the catalog sync and the example recommendations client."""

    section: ClassVar[str] = "consumers"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_CONSUMERS_")

    archiver_group: str = Field("streamrec-archiver", min_length=1, description="Consumer group of the archiver.")
    archiver_topic: str | None = Field(
        None, description="Topic the archiver reads; unset: STREAMREC_KAFKA_INTERACTIONS_TOPIC."
    )
    roll_max_rows: int = Field(100_000, ge=1, description="Write a file once this many events are buffered.")
    roll_max_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="... or once the buffered events' estimated size reaches this."
    )
    roll_max_age_s: float = Field(60.0, gt=0, description="... or once the oldest buffered event waited this long.")
    session_timeout_s: float = Field(
        10.0, ge=6, description="Group session timeout: how soon a dead archiver's partitions move to another."
    )
    archiver_metrics_port: int = Field(
        9102, ge=0, le=65535, description="Port of the archiver's Prometheus /metrics endpoint; 0: none."
    )
    archiver_metrics_host: str = Field(
        "127.0.0.1", description="Address the archiver's metrics endpoint binds (0.0.0.0 in a pod)."
    )
    poll_max_messages: int = Field(5000, ge=1, description="Messages taken per poll.")
    poll_timeout_s: float = Field(0.5, gt=0, description="Longest wait of one poll.")
    recs_group: str | None = Field(
        None, description="Consumer group of the example recommendations client; unset: a fresh one per run."
    )
    catalog_sync_metrics_port: int = Field(
        9103, ge=0, le=65535, description="Port of the catalog sync's Prometheus /metrics endpoint; 0: none."
    )
    catalog_sync_metrics_host: str = Field(
        "127.0.0.1", description="Address the catalog sync's metrics endpoint binds (0.0.0.0 in a pod)."
    )
    catalog_sync_device: str = Field("cpu", description="Torch device of the catalog sync's embeddings (cpu, cuda).")
    catalog_sync_embed_batch: int = Field(256, ge=1, description="New items embedded per batch by the catalog sync.")
    catalog_sync_torch_threads: int = Field(
        1,
        ge=1,
        description="torch intra-op threads of the catalog sync's embeddings on the CPU (more embed faster but take"
        " cores from the serving processes beside it).",
    )
    catalog_sync_publish_batch: int = Field(
        5000, ge=1, description="Live entries the catalog sync publishes per poll at most (a republish is spread)."
    )
    catalog_sync_export_check_s: float = Field(
        10.0, gt=0, description="How often the catalog sync looks for a newer export to publish for."
    )
    catalog_sync_poll_timeout_s: float = Field(
        0.1, gt=0, description="Longest wait of one catalog poll (bounds the delay of a live change)."
    )
    catalog_sync_feast: bool = Field(True, description="Keep Feast's item_content / user_profile views current.")
