"""Prometheus metrics of the archiver (one registry per archiver, so tests can build several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ArchiverMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_archived = Counter(
            "streamrec_archiver_events", "Events written to Parquet (offsets committed after).", registry=r
        )
        self.events_rejected = Counter(
            "streamrec_archiver_events_rejected",
            "Rejected messages skipped (the worker writes their DLQ records).",
            registry=r,
        )
        self.files_written = Counter("streamrec_archiver_files", "Parquet files written.", registry=r)
        self.rolls = Counter("streamrec_archiver_rolls", "Buffer writes (one file per event date each).", registry=r)
        self.write_seconds = Histogram(
            "streamrec_archiver_write_seconds", "Writing one buffer: Parquet, fsync, rename.", buckets=WRITE_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.buffered_events = Gauge("streamrec_archiver_buffered_events", "Events read, not yet written.", registry=r)
        self.last_write = Gauge(
            "streamrec_archiver_last_write_timestamp_seconds",
            "Unix time of the last buffer write whose offsets were committed (0: none yet).",
            registry=r,
        )
        self.last_poll = Gauge(
            "streamrec_archiver_last_poll_timestamp_seconds", "Unix time of the last poll of Kafka.", registry=r
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


EMBED_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class CatalogSyncMetrics:
    """Prometheus metrics of the catalog sync (one registry per sync)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "streamrec_catalog_sync_records",
            "Catalog records read, by kind (items, users) and outcome (created, updated, deleted, unchanged, "
            "purge, rejected).",
            ["kind", "outcome"],
            registry=r,
        )
        self.rejects = Counter(
            "streamrec_catalog_sync_rejects",
            "Catalog records rejected (dead-lettered once), by reason code.",
            ["reason"],
            registry=r,
        )
        self.embed_seconds = Histogram(
            "streamrec_catalog_sync_embed_seconds",
            "Embedding one batch of new items (text, image, content encoder).",
            buckets=EMBED_BUCKETS,
            registry=r,
        )
        self.items_embedded = Counter(
            "streamrec_catalog_sync_items_embedded", "Items embedded from their content alone.", registry=r
        )
        self.entries_published = Counter(
            "streamrec_catalog_sync_entries_published",
            "Live catalog entries published (changed ones only).",
            registry=r,
        )
        self.publish_lag = Histogram(
            "streamrec_catalog_sync_publish_lag_seconds",
            "Record updated_at to its live entry published, for records updated after the sync started.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.feast_rows = Counter(
            "streamrec_catalog_sync_feast_rows", "Rows written to Feast's online store, by view.", ["view"], registry=r
        )
        self.image_failures = Counter(
            "streamrec_catalog_sync_image_failures", "Item pictures that could not be read (embedded without).",
            registry=r,
        )  # fmt: skip
        self.export_version = Gauge(
            "streamrec_catalog_sync_export_info",
            "1 for the export version the live catalog is published for.",
            ["version"],
            registry=r,
        )
        self.export_switch = Gauge(
            "streamrec_catalog_sync_export_switch_timestamp_seconds",
            "Unix time the sync last started publishing for a (new) export version.",
            registry=r,
        )
        self.live_items = Gauge(
            "streamrec_catalog_sync_live_items", "Items in the catalog state (tombstones included).", registry=r
        )
        self.last_poll = Gauge(
            "streamrec_catalog_sync_last_poll_timestamp_seconds", "Unix time of the last poll of Kafka.", registry=r
        )

    def set_export(self, version: str) -> None:
        self.export_version.clear()
        self.export_version.labels(version=version).set(1)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
