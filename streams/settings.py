"""Settings of the streaming worker (env prefix ``STREAMREC_STREAMS_``).

Topic names default to the shared :class:`streamrec.settings.KafkaSettings` ones; tests and side-by-side
deployments override them (and ``app_id``) so that several workers never share state by accident.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from streamrec.errors import ConfigError
from streamrec.settings import ComponentSettings, KafkaSettings

#: Variables the worker once read, now declared once for every component in the core settings. Unknown
#: variables are otherwise ignored, so an old deployment would silently fall back to the defaults.
MOVED_TO_CORE_SETTINGS = {
    "STREAMREC_STREAMS_FEAST_REPO": "STREAMREC_FEAST_REPO",
    "STREAMREC_STREAMS_FEAST_PROJECT": "STREAMREC_FEAST_PROJECT",
    "STREAMREC_STREAMS_FEAST_REGISTRY": "STREAMREC_FEAST_REGISTRY",
    "STREAMREC_STREAMS_MAX_FUTURE_SKEW_S": "STREAMREC_KAFKA_MAX_FUTURE_SKEW_S",
}


class StreamsSettings(ComponentSettings):
    """Faust worker: topics, batching, idempotence window, Feast push, recommendation refresh, metrics."""

    section: ClassVar[str] = "streams"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_STREAMS_")

    app_id: str = Field(
        "streamrec-worker",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Faust app id = Kafka consumer group; also prefixes internal topics (changelogs, by-item).",
    )
    interactions_topic: str | None = Field(None, description="Source topic; unset: STREAMREC_KAFKA_INTERACTIONS_TOPIC.")
    recommendations_topic: str | None = Field(
        None, description="Where refreshed recommendations go; unset: STREAMREC_KAFKA_RECOMMENDATIONS_TOPIC."
    )
    dlq_topic: str | None = Field(None, description="Dead-letter topic; unset: STREAMREC_KAFKA_DLQ_TOPIC.")
    by_item_topic: str | None = Field(
        None, description="Internal topic repartitioning events by item id; unset: '<app_id>-by-item'."
    )
    web_host: str = Field(
        "127.0.0.1",
        description="Bind address of the worker's web server (/metrics); a pod sets 0.0.0.0 for its probes.",
    )
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the worker's web server (/metrics).")
    web_debug_enabled: bool = Field(
        False,
        description="Serve /debug/tasks and Faust's own table, router and statistics views (read-only, no auth):"
        " only where the port is not reachable by others.",
    )
    evict_interval_s: float = Field(
        60.0, gt=0, description="How often users and items idle past their longest window are evicted."
    )
    shutdown_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait at shutdown for pending Feast pushes (unpushed batches are re-read)."
    )
    data_dir: Path = Field(Path(".streamrec/faust"), description="Faust's data directory (one folder per app id).")
    batch_max_events: int = Field(1000, ge=1, description="Largest batch taken from the stream at once.")
    batch_within_ms: int = Field(
        20, ge=1, description="Longest wait for a batch to fill; bounds the latency a batch adds."
    )
    commit_interval_s: float = Field(1.0, gt=0, description="How often processed offsets are committed.")
    session_timeout_s: float = Field(
        10.0, ge=6, description="Group session timeout: how soon a dead worker's partitions move to another."
    )
    standby_replicas: int = Field(
        0,
        ge=0,
        description="Standby copies of each table partition kept by other workers (Faust's table_standby_replicas)."
        " A standby decodes every changelog write of the partition it shadows; 0: a moved partition is restored"
        " from its changelog instead.",
    )
    dedupe_max_events: int = Field(
        256, ge=1, description="Event ids remembered per user for de-duplication (most recent kept)."
    )
    dedupe_window_s: int = Field(
        24 * 3600,
        ge=60,
        description="Event ids read longer ago than this (before the user's latest read) are forgotten; read "
        "time is the broker's append time where the topic stamps it, else the worker's clock.",
    )
    catalog_path: Path | None = Field(
        None,
        description="items.parquet mapping item -> category; unset: <archive_root>/items.parquet if present.",
    )
    # Which repository, project and registry: streamrec.settings.FeastSettings (STREAMREC_FEAST_*), shared.
    feast_enabled: bool = Field(True, description="Push streaming features to the Feast online store.")
    feast_write: Literal["direct", "push"] = Field(
        "direct",
        description="direct: push sources' views via Feast's online-store writer (fast); push: FeatureStore.push.",
    )
    feast_flush_ms: int = Field(100, ge=1, description="Longest a feature row waits before it is pushed.")
    feast_flush_rows: int = Field(500, ge=1, description="Rows per push call; a full buffer is pushed at once.")
    feast_max_pending_events: int = Field(
        50_000, ge=1, description="Processed events whose feature push is pending before the stream waits."
    )
    recs_enabled: bool = Field(True, description="Publish refreshed recommendations for users with new events.")
    recs_debounce_ms: int = Field(2000, ge=0, description="At most one refresh per user per this interval.")
    recs_k: int = Field(10, ge=1, le=100, description="Items per recommendation message.")
    recs_source: Literal["auto", "popularity", "pipeline"] = Field(
        "auto",
        description="pipeline: serving's Triton client; popularity: the fallback; auto: pipeline when installed.",
    )
    recs_concurrency: int = Field(
        8, ge=1, description="Pipeline requests in flight at once; a refresh round asks for 16x this many users."
    )
    recs_max_per_s: float = Field(
        1000.0, gt=0, description="Most recommendation refreshes started per second (bounds the load on Triton)."
    )
    recs_max_pending: int = Field(
        100_000, ge=1, description="Most users waiting for a refresh; beyond, new users' refreshes are dropped."
    )
    popularity_candidates: int = Field(
        50, ge=1, description="Most popular items the popularity fallback filters against the Bloom filter."
    )
    offset_repair_interval_s: float = Field(
        5.0, gt=0, description="How often partitions are checked for offsets Faust lost after recovery."
    )
    lag_interval_s: float = Field(1.0, gt=0, description="How often the consumer-lag gauges are refreshed.")
    retry_max_backoff_s: float = Field(5.0, gt=0, description="Longest wait between retries of a failing store.")
    uvloop: bool = Field(True, description="Run the worker's event loop on uvloop.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Worker log level.")

    @model_validator(mode="before")
    @classmethod
    def _refuse_moved_variables(cls, data: Any) -> Any:
        for old, new in MOVED_TO_CORE_SETTINGS.items():
            if old in os.environ:
                raise ConfigError(f"this setting is shared by every component now: set {new} instead", source=old)
        return data

    def interactions(self, kafka: KafkaSettings) -> str:
        return self.interactions_topic or kafka.interactions_topic

    def recommendations(self, kafka: KafkaSettings) -> str:
        return self.recommendations_topic or kafka.recommendations_topic

    def dlq(self, kafka: KafkaSettings) -> str:
        return self.dlq_topic or kafka.dlq_topic

    @property
    def by_item(self) -> str:
        return self.by_item_topic or f"{self.app_id}-by-item"

    @property
    def popularity_key(self) -> str:
        # One sorted set per app id, so test workers and side-by-side deployments do not mix.
        return f"{self.app_id}:popular"
