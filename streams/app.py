"""The Faust app: topics, changelog-backed tables and two thin agents around :mod:`streams.processors`.

Faust-specific mechanics live here and nowhere else:

* **Batching**: ``stream.take_events(n, within)`` hands over a batch of events (``take()`` would give
  values only, and table writes need the event: see :func:`acting_as`).
* **Holding offsets**: each event's message gets one extra reference (:func:`hold`) before any await.
  ``take_events`` drops its own reference when the loop body returns -- or is cancelled, or raises -- but
  the offset only becomes committable when :func:`release` drops ours, which the processors do after
  every side effect of the batch is durable (Bloom write done, feature rows pushed). A crash or
  shutdown in between leaves the offsets uncommitted, and the batch is read again (idempotently).
* **Changelog partitions**: a table write goes to the changelog partition of the *current event*. We
  write each key once per batch, with the key's own last event bound as current (:func:`acting_as`),
  so user ``u`` always lands in the changelog partition of its source partition, and recovery after a
  rebalance restores it on whichever worker owns that partition.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from streamrec.bloom import AsyncSeenItemStore
from streamrec.settings import BloomSettings, KafkaSettings, RedisSettings
from streams.catalog import Catalog
from streams.metrics import WorkerMetrics, make_lag_sensor
from streams.offset_repair import OffsetGapRepair
from streams.processors import Incoming, InteractionsProcessor, ItemsProcessor
from streams.pusher import MicroBatchPusher, PushFn
from streams.recs import AutoSource, PipelineSource, RecommendationSource, Refresher, StreamingPopularity
from streams.settings import StreamsSettings
from streams.state import DedupeLimits, dump_item, dump_user, load_item, load_user

log = logging.getLogger(__name__)

USER_CODEC = "streamrec_user_state"
ITEM_CODEC = "streamrec_item_state"
COMPONENT = "streamrec-worker"


def register_codecs() -> None:
    """Faust codecs for the table values: the live objects stay in memory, JSON goes to the changelog."""
    from faust.serializers import codecs

    class UserStateCodec(codecs.Codec):  # type: ignore[misc]
        def _dumps(self, obj: Any) -> bytes:
            return dump_user(obj)

        def _loads(self, s: bytes) -> Any:
            return load_user(s)

    class ItemStateCodec(codecs.Codec):  # type: ignore[misc]
        def _dumps(self, obj: Any) -> bytes:
            return dump_item(obj)

        def _loads(self, s: bytes) -> Any:
            return load_item(s)

    codecs.register(USER_CODEC, UserStateCodec())
    codecs.register(ITEM_CODEC, ItemStateCodec())


@contextmanager
def acting_as(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event for the duration of the block.

    Faust takes a table write's changelog partition from the current event (a task-local context
    variable that ``faust.streams`` sets while iterating a stream); batches have no current event, so
    writes are wrapped in this. Relies on ``faust.streams._current_event`` (faust-streaming 0.15).
    """
    from faust import streams as faust_streams

    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def hold(events: Sequence[Any]) -> None:
    for event in events:
        event.message.incref()


def release(events: Sequence[Any]) -> Callable[[], None]:
    def _release() -> None:
        for event in events:
            event.ack()

    return _release


class FaustTable:
    """The processors' StateTable over a Faust table with bytes keys.

    ``put`` does what ``table[key] = value`` does (changelog message, then the local store) but keeps the
    changelog message's future, so that :meth:`durable` can wait for the broker's acknowledgement. Faust's
    own pre-commit flush of its send-soon buffer gives up after 100 ms without progress, so on a busy
    machine a commit could otherwise overtake the changelog write it covers.
    """

    def __init__(self, table: Any) -> None:
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


class RedisScores:
    """Item popularity for the fallback recommender: one sorted set, scores set absolutely (idempotent)."""

    def __init__(self, store: AsyncSeenItemStore, key: str) -> None:
        self.store = store
        self.key = key

    async def update(self, scores: Mapping[str, float]) -> None:
        await self.store.client.zadd(self.key, dict(scores))


@dataclass
class WorkerConfig:
    streams: StreamsSettings
    kafka: KafkaSettings
    redis: RedisSettings
    bloom: BloomSettings
    partitions: int  # of the interactions topic (tables and the by-item topic are co-partitioned with it)
    catalog: Catalog
    push: PushFn | None  # None: Feast disabled


def broker_url(kafka: KafkaSettings) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in kafka.bootstrap.split(",") if server.strip())


def _credentials(kafka: KafkaSettings) -> Any:
    if not kafka.sasl_username:
        return None
    from faust.auth import SASLCredentials

    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return SASLCredentials(username=kafka.sasl_username, password=password)


class Runtime:
    """Resources created on the worker's event loop (Redis clients, pusher, refresher) and the processors."""

    def __init__(self, config: WorkerConfig, metrics: WorkerMetrics, send: dict[str, Any], tables: dict[str, Any]):
        self.config = config
        self.metrics = metrics
        self._send = send
        self._tables = tables
        self._lock = asyncio.Lock()
        self.interactions: InteractionsProcessor | None = None
        self.items: ItemsProcessor | None = None
        self.store: AsyncSeenItemStore | None = None
        self.pusher: MicroBatchPusher | None = None
        self.refresher: Refresher | None = None

    async def start(self) -> None:
        async with self._lock:
            if self.interactions is not None:
                return
            cfg, s = self.config, self.config.streams
            self.store = await AsyncSeenItemStore.connect(cfg.redis, cfg.bloom)
            log.info("Bloom backend: %s", self.store.backend.name)
            if cfg.push is not None:
                self.pusher = MicroBatchPusher(
                    cfg.push,
                    self.metrics,
                    flush_ms=s.feast_flush_ms,
                    flush_rows=s.feast_flush_rows,
                    max_pending_events=s.feast_max_pending_events,
                    max_backoff_s=s.retry_max_backoff_s,
                )
            if s.recs_enabled:
                self.refresher = Refresher(
                    self._recommendation_source(),
                    self._send["recommendations"],
                    k=s.recs_k,
                    debounce_s=s.recs_debounce_ms / 1000.0,
                    concurrency=s.recs_concurrency,
                    on_published=self._on_published,
                )
            limits = DedupeLimits(max_events=s.dedupe_max_events, window_minutes=max(s.dedupe_window_s // 60, 1))
            self.interactions = InteractionsProcessor(
                topic=s.interactions(cfg.kafka),
                users=FaustTable(self._tables["users"]),
                dlq=self._send["dlq"],
                forward=self._send["by_item"],
                bloom=self.store,
                metrics=self.metrics,
                category_of=cfg.catalog,
                limits=limits,
                by_item_partitions=cfg.partitions,
                pusher=self.pusher,
                refresher=self.refresher,
                component=COMPONENT,
                max_event_bytes=cfg.kafka.max_event_bytes,
                max_backoff_s=s.retry_max_backoff_s,
            )
            self.items = ItemsProcessor(
                items=FaustTable(self._tables["items"]),
                metrics=self.metrics,
                scores=RedisScores(self.store, s.popularity_key),
                pusher=self.pusher,
                max_backoff_s=s.retry_max_backoff_s,
            )

    def _recommendation_source(self) -> RecommendationSource:
        s = self.config.streams
        assert self.store is not None  # noqa: S101 - set just before, by start()
        fallback = StreamingPopularity(self.store, s.popularity_key, s.popularity_candidates)
        if s.recs_source == "popularity":
            return fallback
        pipeline = PipelineSource.create(s.recs_concurrency)
        if s.recs_source == "pipeline" and pipeline is not None:
            return pipeline
        return AutoSource(pipeline, fallback)

    def _on_published(self, source: str, seconds: float) -> None:
        self.metrics.recs_published.labels(source).inc()
        self.metrics.recs_seconds.observe(seconds)

    async def close(self) -> None:
        if self.pusher is not None:
            await self.pusher.close()
        if self.refresher is not None:
            await self.refresher.close()
        if self.store is not None:
            await self.store.close()


def create_app(config: WorkerConfig, metrics: WorkerMetrics | None = None) -> tuple[Any, Runtime]:
    import faust
    from faust import web

    register_codecs()
    s, kafka = config.streams, config.kafka
    registry_metrics = metrics or WorkerMetrics()
    app = faust.App(
        s.app_id,
        broker=broker_url(kafka),
        broker_credentials=_credentials(kafka),
        broker_client_id=f"{kafka.client_id}-{s.app_id}",
        broker_commit_interval=s.commit_interval_s,
        broker_session_timeout=s.session_timeout_s,
        broker_heartbeat_interval=min(3.0, s.session_timeout_s / 3),
        store="memory://",
        datadir=str(s.data_dir / s.app_id),
        autodiscover=False,
        web_enabled=True,
        web_bind=s.web_host,
        web_port=s.web_port,
        topic_partitions=config.partitions,
        topic_replication_factor=kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Held batches are re-read after a restart or rebalance anyway (idempotently), so never let a stop
        # or rebalance wait on them (a Feast outage would otherwise hang both).
        stream_wait_empty=False,
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
    )
    source = app.topic(s.interactions(kafka), key_serializer="raw", value_serializer="raw")
    by_item = app.topic(
        s.by_item, partitions=config.partitions, internal=True, key_serializer="raw", value_serializer="raw"
    )
    dlq = app.topic(s.dlq(kafka), key_serializer="raw", value_serializer="raw")
    recommendations = app.topic(s.recommendations(kafka), key_serializer="raw", value_serializer="raw")
    users = app.Table(
        "users", partitions=config.partitions, help="Per-user state (streams.state.UserState) by user id."
    )
    items = app.Table(
        "items", partitions=config.partitions, help="Per-item state (streams.state.ItemState) by item id."
    )
    # Faust derives table serializers from model types; ours are plain dataclasses with their own codecs.
    # The changelog topic (already built by app.Table, with JSON) is rebuilt so that recovery decodes
    # with the same codecs the writes use.
    table: Any
    for table, codec in ((users, USER_CODEC), (items, ITEM_CODEC)):
        table.key_serializer = "raw"
        table.value_serializer = codec
        table.changelog_topic = table._new_changelog_topic()

    def sender(topic: Any) -> Any:
        async def send(key: bytes | None, value: bytes, partition: int | None = None) -> None:
            await topic.send(key=key, value=value, partition=partition)

        return send

    async def send_recommendation(user_id: str, payload: bytes) -> None:
        await recommendations.send(key=user_id.encode(), value=payload)

    runtime = Runtime(
        config,
        registry_metrics,
        {"dlq": sender(dlq), "by_item": sender(by_item), "recommendations": send_recommendation},
        {"users": users, "items": items},
    )

    async def run_batches(stream: Any, process: Callable[[], Any]) -> None:
        await runtime.start()
        # Table writes queue changelog messages; Faust pauses the stream when more than max_messages
        # wait (default 100, less than one batch of distinct users). Allow a few batches' worth.
        app.producer.buffer.max_messages = max(app.producer.buffer.max_messages, 4 * s.batch_max_events)
        async for events in stream.take_events(s.batch_max_events, s.batch_within_ms / 1000.0):
            hold(events)
            batch = [Incoming(e.key, e.value, e.message.partition, e.message.offset, e) for e in events]
            try:
                await process()(batch, release(events))
            except asyncio.CancelledError:
                raise  # shutdown: the held offsets stay uncommitted and are read again
            except Exception as exc:
                # A bug, not bad input (bad input goes to the DLQ). Stop the worker: its uncommitted batch
                # is read again after the restart, and a crash loop is louder than a silent skip.
                log.exception("batch processing failed; stopping the worker")
                await app.crash(exc)
                return

    @app.agent(source, name=f"{s.app_id}.interactions")
    async def interactions_agent(stream: Any) -> None:
        await run_batches(stream, lambda: runtime.interactions.process)  # type: ignore[union-attr]

    @app.agent(by_item, name=f"{s.app_id}.items")
    async def items_agent(stream: Any) -> None:
        await run_batches(stream, lambda: runtime.items.process)  # type: ignore[union-attr]

    gap_repair = OffsetGapRepair(
        lambda: app.consumer, {s.interactions(kafka), s.by_item}, registry_metrics.offset_gaps_repaired.inc
    )

    @app.timer(s.offset_repair_interval_s)
    async def repair_offset_gaps() -> None:
        await gap_repair.check()

    lag_sensor = make_lag_sensor(registry_metrics, [s.interactions(kafka), s.by_item], lambda: app.consumer)
    app.sensors.add(lag_sensor)

    @app.timer(s.lag_interval_s)
    async def refresh_lag() -> None:
        lag_sensor.refresh()

    class MetricsView(web.View):  # type: ignore[misc]
        async def get(self, request: web.Request) -> web.Response:
            return self.bytes(registry_metrics.exposition(), content_type="text/plain; version=0.0.4")

    app.page("/metrics")(MetricsView)

    class TasksView(web.View):  # type: ignore[misc]
        """Where every coroutine of the worker waits: what to look at when offsets stop moving."""

        async def get(self, request: web.Request) -> web.Response:
            out = []
            for task in asyncio.all_tasks():
                chain: list[str] = []
                awaitable: Any = task.get_coro()
                while awaitable is not None and len(chain) < 24:  # follow the await chain down
                    frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
                    if frame is not None:
                        chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
                    awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
                out.append(f"{task.get_name()}: {' -> '.join(chain)}")
            consumer: Any = app.consumer
            for tp, acked in sorted(getattr(consumer, "_acked", {}).items()):
                committed = consumer._committed_offset.get(tp)
                head = sorted(acked)[:3]
                out.append(f"ACKED {tp.topic}/{tp.partition}: committed={committed} n_acked={len(acked)} first={head}")
            unacked = sorted((m.tp.topic, m.tp.partition, m.offset, m.refcount) for m in consumer._unacked_messages)
            out.append(f"UNACKED {len(unacked)}: {unacked[:20]}")
            return self.bytes("\n".join(sorted(out)).encode(), content_type="text/plain")

    app.page("/debug/tasks")(TasksView)

    async def close_resources(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await runtime.close()

    app.on_before_shutdown.connect(close_resources)  # type: ignore[arg-type]  # mode's stub rejects async receivers

    return app, runtime
