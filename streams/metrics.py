"""Prometheus metrics of the worker, served at ``/metrics`` by the Faust web server.

Counters and histograms are updated by the processors; consumer lag per partition (what KEDA scales
on) is kept by :class:`LagSensor`, a Faust sensor, refreshed on every commit and on a timer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from streams.faust_compat import OffsetBook

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


class WorkerMetrics:
    """One registry per worker (so tests can build several without clashing names)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter("streamrec_worker_events_in", "Interaction messages read.", registry=r)
        self.events_invalid = Counter(
            "streamrec_worker_events_invalid",
            "Messages sent to the DLQ, by reject reason code.",
            ["reason"],
            registry=r,
        )
        self.events_deduped = Counter(
            "streamrec_worker_events_deduped", "Duplicate event ids dropped (same id, other offset).", registry=r
        )
        self.events_reprocessed = Counter(
            "streamrec_worker_events_reprocessed",
            "Events read again after a restart (already counted; side effects redone).",
            registry=r,
        )
        self.events_stale = Counter(
            "streamrec_worker_events_stale", "Re-read events whose id had left the dedupe window.", registry=r
        )
        self.item_entries_skipped = Counter(
            "streamrec_worker_item_entries_skipped",
            "By-item entries whose source offset the item had applied already (re-forwards).",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "streamrec_worker_batch_processing_seconds",
            "Processing time of one batch, by agent.",
            ["agent"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "streamrec_worker_batch_events",
            "Events per batch, by agent.",
            ["agent"],
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.event_age = Histogram(
            "streamrec_worker_event_age_seconds",
            "Event time to the end of its processing (includes producer clock skew).",
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.bloom_seconds = Histogram(
            "streamrec_worker_bloom_write_seconds", "One pipelined Bloom write.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.feast_seconds = Histogram(
            "streamrec_worker_feast_push_seconds",
            "One Feast push call, by push source.",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feast_rows = Counter("streamrec_worker_feast_rows", "Rows pushed, by push source.", ["source"], registry=r)
        self.offset_gaps_repaired = Counter(
            "streamrec_worker_offset_gaps_repaired",
            "Partitions re-read from their committed offset because Faust lost messages after recovery.",
            registry=r,
        )
        self.state_evicted = Counter(
            "streamrec_worker_state_evicted",
            "Keys removed from a state table, idle past its longest window (tombstoned).",
            ["table"],
            registry=r,
        )
        self.state_keys = Gauge(
            "streamrec_worker_state_keys", "Keys held in a state table by this worker.", ["table"], registry=r
        )
        self.store_errors = Counter(
            "streamrec_worker_store_errors", "Failed store calls (retried), by store.", ["store"], registry=r
        )
        self.recs_published = Counter(
            "streamrec_worker_recommendations_published", "Recommendation messages, by source.", ["source"], registry=r
        )
        self.recs_skipped = Counter(
            "streamrec_worker_recommendations_skipped",
            "Refreshes not published: coalesced (a newer trigger of a waiting user), dropped (too many users"
            " waiting), failed (source or publish error).",
            ["reason"],
            registry=r,
        )
        self.recs_pending = Gauge(
            "streamrec_worker_recommendations_pending", "Users waiting for a recommendation refresh.", registry=r
        )
        self.recs_seconds = Histogram(
            "streamrec_worker_recommendation_seconds",
            "From the triggering event's processing to its recommendation message being sent.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "streamrec_worker_consumer_lag",
            "Log end offset minus committed offset, per assigned partition (what KEDA scales on).",
            ["topic", "partition"],
            registry=r,
        )
        self.fetch_lag = Gauge(
            "streamrec_worker_fetch_lag",
            "Log end offset minus the next offset handed to the stream, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def make_lag_sensor(metrics: WorkerMetrics, topics: Iterable[str], consumer: Callable[[], Any]) -> Any:
    """A Faust sensor (subclass built here so that importing this module does not import Faust)."""
    from faust import Sensor

    watched = set(topics)

    class LagSensor(Sensor):  # type: ignore[misc]
        """Keeps per-partition lag gauges: read position from messages in, commits from the consumer, log ends
        from the broker (:meth:`refresh_ends`) or the last fetch, whichever is further.

        The last fetch alone is not enough: a worker behind its backlog stops fetching a partition whose
        stream buffer is full, and the end it last saw goes stale, so the gauges would show a small lag
        exactly when it is large (and jump when fetching resumes)."""

        def __init__(self) -> None:
            super().__init__()
            self.read: dict[Any, int] = {}
            self.labelled: set[Any] = set()
            self.ends: dict[Any, int] = {}

        async def refresh_ends(self) -> None:
            """Ask the broker for the log end of every assigned partition (one request per broker)."""
            cons = consumer()
            try:
                assigned = [tp for tp in cons.assignment() if tp.topic in watched]
                if assigned:
                    self.ends = {tp: int(end) for tp, end in (await cons.highwaters(*assigned)).items()}
            except Exception as exc:  # broker unreachable or mid-rebalance: the fetched ends still serve
                log.debug("log end offsets not refreshed: %r", exc)

        def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
            if tp.topic in watched and offset >= self.read.get(tp, -1):
                self.read[tp] = offset

        def on_commit_completed(self, consumer: Any, state: Any) -> None:
            self.refresh()

        def refresh(self) -> None:
            cons = consumer()
            try:
                assigned = [tp for tp in cons.assignment() if tp.topic in watched]
            except Exception:  # consumer not started or mid-rebalance: keep the last values
                return
            committed_map = OffsetBook(cons).committed()
            for tp in self.labelled - set(assigned):  # revoked: their lag is another worker's now
                self.labelled.discard(tp)
                self.read.pop(tp, None)
                for gauge in (metrics.consumer_lag, metrics.fetch_lag):
                    with contextlib.suppress(KeyError):
                        gauge.remove(tp.topic, str(tp.partition))
            for tp in assigned:
                try:
                    fetched = int(cons.highwater(tp))
                except Exception:
                    fetched = -1
                end = max(fetched, self.ends.get(tp, -1))
                if end < 0:
                    continue
                committed = committed_map.get(tp)
                labels = (tp.topic, str(tp.partition))
                self.labelled.add(tp)
                # Committed offsets point at the next message to read; None: nothing committed yet.
                metrics.consumer_lag.labels(*labels).set(max(end - (committed or 0), 0))
                metrics.fetch_lag.labels(*labels).set(max(end - self.read.get(tp, -1) - 1, 0))

    return LagSensor()
