"""The worker's resources, created on its event loop: Redis clients, Feast pusher, refresher, processors.

Also the adapters between Faust and the processors' ports: :class:`FaustTable` (``StateTable`` over a Faust
table) and :class:`RedisScores` (``ScoresPort`` over the popularity sorted set).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from streamrec.bloom import AsyncSeenItemStore
from streamrec.catalog.settings import CatalogSettings
from streamrec.client.dlq import DLQ_OWNER, DeadLetterRole, DeadLetterWriter
from streamrec.pipeline_client import LiveAvailability
from streamrec.settings import PathsSettings
from streams.faust_compat import acting_as
from streams.metrics import WorkerMetrics
from streams.processors import InteractionsProcessor, ItemsProcessor, Send
from streams.pusher import MicroBatchPusher
from streams.recs import (
    AutoSource,
    PipelineSource,
    RecommendationSource,
    Refresher,
    StreamingPopularity,
    unavailable_in_current_export,
)
from streams.state import DedupeLimits

if TYPE_CHECKING:
    from faust.types import TableT

    from streams.interfaces import WorkerConfig, WorkerTables

log = logging.getLogger(__name__)

COMPONENT = DLQ_OWNER  # the worker is the one writer of the interactions topic's dead letters


class FaustTable:
    """The processors' StateTable over a Faust table with bytes keys.

    ``put`` does what ``table[key] = value`` does (changelog message, then the local store) but keeps the
    changelog message's future, so that :meth:`durable` can wait for the broker's acknowledgement. Faust's
    own pre-commit flush of its send-soon buffer gives up after 100 ms without progress, so on a busy
    machine a commit could otherwise overtake the changelog write it covers.

    A table write goes to the changelog partition of the *current event*; each key is written with its own
    last event bound as current (:func:`streams.faust_compat.acting_as`), so user ``u`` always lands in the
    changelog partition of its source partition, and recovery after a rebalance restores it on whichever
    worker owns that partition.
    """

    def __init__(self, table: TableT) -> None:
        self.table = table
        self._pending: list[Any] = []

    def get(self, key: str) -> Any:
        return self.table.get(key.encode())

    def put(self, key: str, value: Any, handle: Any) -> None:
        raw_key = key.encode()
        with acting_as(handle):
            fut = self.table.send_changelog(self.table.partition_for_key(raw_key), raw_key, value)
        self.table.data[raw_key] = value
        self._pending.append(fut)

    async def durable(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    def scan(self) -> Iterator[tuple[str, Any]]:
        for raw_key, value in list(self.table.data.items()):
            yield raw_key.decode(), value

    def delete(self, key: str, partition: int) -> None:
        """What ``del table[key]`` does, to an explicit changelog partition (no current event is needed)."""
        raw_key = key.encode()
        self.table.send_changelog(partition, raw_key, None, value_serializer="raw")  # tombstone
        self.table.data.pop(raw_key, None)


class RedisScores:
    """Item popularity for the fallback recommender: one sorted set, scores set absolutely (idempotent)."""

    def __init__(self, store: AsyncSeenItemStore, key: str) -> None:
        self.store = store
        self.key = key

    async def update(self, scores: Mapping[str, float]) -> None:
        await self.store.client.zadd(self.key, dict(scores))


class Runtime:
    """Created with the app, started by the first agent on the event loop, closed before shutdown."""

    def __init__(
        self,
        config: WorkerConfig,
        metrics: WorkerMetrics,
        tables: WorkerTables,
        dlq: Send,
        by_item: Send,
        recommendations: Send,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.tables = tables
        self.dlq = dlq
        self.by_item = by_item
        self.recommendations = recommendations
        self._lock = asyncio.Lock()
        self.interactions: InteractionsProcessor | None = None
        self.items: ItemsProcessor | None = None
        self.store: AsyncSeenItemStore | None = None
        self.pusher: MicroBatchPusher | None = None
        self.refresher: Refresher | None = None
        self.availability: LiveAvailability | None = None

    async def start(self) -> None:
        async with self._lock:
            if self.interactions is not None:
                return
            cfg, s = self.config, self.config.streams
            self.store = store = await AsyncSeenItemStore.connect(cfg.redis, cfg.bloom)
            log.info("Bloom backend: %s", store.backend.name)
            if cfg.push is not None:
                self.pusher = MicroBatchPusher(
                    cfg.push,
                    self.metrics,
                    flush_ms=s.feast_flush_ms,
                    flush_rows=s.feast_flush_rows,
                    max_pending_events=s.feast_max_pending_events,
                    max_backoff_s=s.retry_max_backoff_s,
                    close_timeout_s=s.shutdown_timeout_s,
                )
            if s.recs_enabled:
                self.refresher = Refresher(
                    self._recommendation_source(store),
                    self._send_recommendation,
                    k=s.recs_k,
                    debounce_s=s.recs_debounce_ms / 1000.0,
                    concurrency=s.recs_concurrency,
                    on_published=self._on_published,
                    max_per_s=s.recs_max_per_s,
                    max_pending=s.recs_max_pending,
                    on_skipped=self._on_skipped,
                )
            limits = DedupeLimits(max_events=s.dedupe_max_events, window_minutes=max(s.dedupe_window_s // 60, 1))
            self.interactions = InteractionsProcessor(
                topic=s.interactions(cfg.kafka),
                users=FaustTable(self.tables.users),
                dlq=self.dlq,
                forward=self.by_item,
                bloom=store,
                metrics=self.metrics,
                category_of=cfg.catalog,
                limits=limits,
                by_item_partitions=cfg.partitions,
                pusher=self.pusher,
                refresher=self.refresher,
                dead_letters=DeadLetterWriter(COMPONENT, DeadLetterRole.WRITER),
                max_event_bytes=cfg.kafka.max_event_bytes,
                max_future_skew_s=cfg.kafka.max_future_skew_s,
                max_backoff_s=s.retry_max_backoff_s,
            )
            self.items = ItemsProcessor(
                items=FaustTable(self.tables.items),
                metrics=self.metrics,
                scores=RedisScores(store, s.popularity_key),
                pusher=self.pusher,
                max_backoff_s=s.retry_max_backoff_s,
            )

    def _recommendation_source(self, store: AsyncSeenItemStore) -> RecommendationSource:
        s = self.config.streams
        # Items taken off sale never go out on the recommendations topic, whichever source answers.
        availability = LiveAvailability(self.config.redis.effective_url, prefix=CatalogSettings.load().live_prefix)
        self.availability = availability
        export_root = PathsSettings.load().export_root

        async def hidden() -> frozenset[str]:
            return await asyncio.to_thread(unavailable_in_current_export, availability, export_root)

        fallback = StreamingPopularity(store, s.popularity_key, s.popularity_candidates, hidden=hidden)
        if s.recs_source == "popularity":
            return fallback
        pipeline = PipelineSource.create(s.recs_concurrency, availability)
        if s.recs_source == "pipeline" and pipeline is not None:
            return pipeline
        return AutoSource(pipeline, fallback)

    async def _send_recommendation(self, user_id: str, payload: bytes) -> None:
        await self.recommendations(user_id.encode(), payload)

    def _on_published(self, source: str, seconds: float) -> None:
        self.metrics.recs_published.labels(source).inc()
        self.metrics.recs_seconds.observe(seconds)
        if self.refresher is not None:
            self.metrics.recs_pending.set(self.refresher.pending)

    def _on_skipped(self, reason: str, n: int) -> None:
        self.metrics.recs_skipped.labels(reason).inc(n)
        if self.refresher is not None:
            self.metrics.recs_pending.set(self.refresher.pending)

    async def close(self) -> None:
        if self.pusher is not None:
            await self.pusher.close()
        if self.refresher is not None:
            await self.refresher.close()
        if self.availability is not None:
            await asyncio.to_thread(self.availability.close)
        if self.store is not None:
            await self.store.close()
