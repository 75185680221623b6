"""Catalog settings: the compacted topics and the record size limit (env prefix ``STREAMREC_CATALOG_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from streamrec.catalog.live import DEFAULT_PREFIX
from streamrec.catalog.models import DEFAULT_MAX_RECORD_BYTES
from streamrec.content_neighbours import DEFAULT_NEIGHBOURS
from streamrec.settings import ComponentSettings


class CatalogSettings(ComponentSettings):
    """Items and user profiles in Kafka: compacted topics keyed by id."""

    section: ClassVar[str] = "catalog"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_CATALOG_")

    items_topic: str = Field("items", min_length=1, description="Compacted topic of item records, keyed by item_id.")
    items_partitions: int = Field(6, ge=1, description="Partitions of the items topic.")
    users_topic: str = Field("users", min_length=1, description="Compacted topic of user profiles, keyed by user_id.")
    users_partitions: int = Field(6, ge=1, description="Partitions of the users topic.")
    dlq_topic: str = Field("catalog.dlq", min_length=1, description="Dead-letter topic for rejected catalog records.")
    dlq_partitions: int = Field(1, ge=1, description="Partitions of the catalog dead-letter topic.")
    max_record_bytes: int = Field(
        DEFAULT_MAX_RECORD_BYTES, ge=1024, le=1_000_000, description="Larger catalog records are refused."
    )
    live_prefix: str = Field(
        DEFAULT_PREFIX,
        min_length=1,
        description="Redis key prefix of the live catalog: the catalog sync writes it, serving, the API's fallback"
        " and the worker's follow it.",
    )
    new_item_neighbours: int = Field(
        DEFAULT_NEIGHBOURS,
        ge=0,
        le=1000,
        description=(
            "An item without a learned embedding (added after training) is embedded as the weighted mean of the "
            "learned embeddings of this many trained items nearest to it in content (the catalog sync, the "
            "fine-tune, and a full training for items without events); 0: the item tower's content-only embedding."
        ),
    )
    min_compaction_lag_ms: int = Field(
        60_000, ge=0, description="A record stays uncompacted at least this long (readers see every change)."
    )
    delete_retention_ms: int = Field(
        24 * 3600 * 1000, ge=0, description="How long a Kafka null (purge marker) stays readable after compaction."
    )
