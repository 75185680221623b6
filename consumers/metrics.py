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
