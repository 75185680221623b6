"""Builds a :class:`~consumers.catalog_sync.CatalogSync` on the real adapters from settings (or given ones)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis

from consumers.catalog_io import (
    COMPONENT,
    CatalogDeadLetters,
    FeastCatalogViews,
    KafkaCatalogFeed,
    RedisLiveCatalog,
    read_dead_lettered,
)
from consumers.catalog_plan import ExportCatalog
from consumers.catalog_sync import CatalogSync, Embedder, LiveCatalog
from consumers.metrics import CatalogSyncMetrics
from consumers.settings import ConsumersSettings
from streamrec.catalog.live import retire_versions
from streamrec.catalog.settings import CatalogSettings
from streamrec.settings import FeastSettings, KafkaSettings, RedisSettings

log = logging.getLogger(__name__)


def build_catalog_sync(
    export_root: Path,
    settings: ConsumersSettings,
    metrics: CatalogSyncMetrics | None = None,
    *,
    kafka: KafkaSettings | None = None,
    redis_settings: RedisSettings | None = None,
    catalog: CatalogSettings | None = None,
    feast_store: Any | None = None,
    live_prefix: str | None = None,
) -> CatalogSync:
    """The sync on Kafka, Redis and Feast. ``feast_store``: a ``feast.FeatureStore`` (default: the configured
    repository, when ``settings.catalog_sync_feast``); ``live_prefix``: the live catalog's key prefix."""
    from consumers.catalog_embed import ContentEmbedder
    from streamrec.security import refuse_placeholder_secrets

    kafka = kafka or KafkaSettings.load()
    redis_settings = redis_settings or RedisSettings.load()
    catalog = catalog or CatalogSettings.load()
    refuse_placeholder_secrets(kafka)  # before any connection
    client = redis.Redis.from_url(redis_settings.effective_url, **redis_settings.client_kwargs())
    prefix = live_prefix or catalog.live_prefix

    def open_export(directory: Path, export: ExportCatalog) -> tuple[LiveCatalog, Embedder]:
        live = RedisLiveCatalog(client, export.version, export.n_items, prefix)
        embedder = ContentEmbedder(
            directory,
            device=settings.catalog_sync_device,
            batch_size=settings.catalog_sync_embed_batch,
            torch_threads=settings.catalog_sync_torch_threads,
            neighbours=catalog.new_item_neighbours,
        )
        return live, embedder

    features = None
    if feast_store is None and settings.catalog_sync_feast:
        from streamrec.feast_config import open_configured_store

        feast_store = open_configured_store(FeastSettings.load(), redis_settings.effective_url)
    if feast_store is not None:
        features = FeastCatalogViews(feast_store)
    already = read_dead_lettered(kafka, catalog.dlq_topic, COMPONENT)
    log.info("%d catalog rejects were dead-lettered before (not written again)", len(already))
    return CatalogSync(
        KafkaCatalogFeed(kafka, catalog),
        CatalogDeadLetters(kafka, catalog, already),
        export_root,
        open_export,
        features,
        catalog,
        metrics,
        poll_max_messages=settings.poll_max_messages,
        poll_timeout_s=settings.catalog_sync_poll_timeout_s,
        embed_batch=settings.catalog_sync_embed_batch,
        publish_batch=settings.catalog_sync_publish_batch,
        export_check_s=settings.catalog_sync_export_check_s,
        retire_versions=lambda keep: retire_versions(client, keep, prefix),
    )
