"""What the API talks to (Triton, Kafka, Redis, Feast) behind one small record, and the API's metrics.

Tests pass fakes for :class:`Services`; :func:`default_services` builds the real clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

from streamrec.pipeline_client import RecommendResult
from streamrec.schemas.events import InteractionEvent

if TYPE_CHECKING:
    from serving.api.catalog import Catalog
    from serving.api.delivery import KafkaDelivery
    from serving.api.live import FeedFactory
    from serving.api.settings import ApiGuardSettings, UiSettings
    from streamrec.catalog.codec import CatalogKind
    from streamrec.catalog.models import CatalogRecord
    from streamrec.pipeline_client import RecommendRequest
    from streamrec.settings import FeastSettings, KafkaSettings, PathsSettings

Check = Callable[[], Awaitable[None]]


@dataclass
class Services:
    """``recommend`` and ``checks`` are async; ``send_event`` writes one event to Kafka and, when it returns an
    awaitable, that resolves once the broker acknowledged (raising :class:`serving.api.delivery.DeliveryFailed`
    or :class:`serving.api.delivery.QueueFull`); ``catalog`` loads the
    item details the page shows (blocking, called once in a thread); ``live_feed`` opens a consumer of the
    recommendations topic (none: no live stream)."""

    recommend: Callable[[RecommendRequest], Awaitable[RecommendResult]]
    send_event: Callable[[InteractionEvent], Awaitable[None] | None]
    checks: dict[str, Check] = field(default_factory=dict)
    close: Callable[[], Awaitable[None]] | None = None
    catalog: Callable[[], Catalog] | None = None
    live_feed: FeedFactory | None = None
    #: Writes catalog records to their compacted topic; resolves once Kafka acknowledged (none: 503).
    write_catalog: Callable[[CatalogKind, Sequence[CatalogRecord]], Awaitable[None]] | None = None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "streamrec_api_requests", "HTTP requests by endpoint and status.", ["endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "streamrec_api_request_seconds", "Request latency by endpoint.", ["endpoint"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )  # fmt: skip
        self.flags = Counter(
            "streamrec_api_recommendation_flags", "Recommendation answers by flag.", ["flag"], registry=self.registry
        )
        self.events = Counter("streamrec_api_events", "Interaction events accepted.", registry=self.registry)

    def count(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint, str(status)).inc()


def event_sender(delivery: Callable[[], KafkaDelivery], topic: str) -> Callable[[InteractionEvent], Awaitable[None]]:
    """``send_event`` over a :class:`KafkaDelivery` (``delivery()`` gives it; keyed by user, event time)."""
    from serving.api.delivery import Record

    async def send_event(event: InteractionEvent) -> None:
        await delivery().deliver([Record(topic, event.user_id.encode(), event.to_json_bytes(), event.epoch_ms)])

    return send_event


def catalog_writer(
    delivery: Callable[[], KafkaDelivery], items_topic: str, users_topic: str
) -> Callable[[CatalogKind, Sequence[CatalogRecord]], Awaitable[None]]:
    """``write_catalog`` over a :class:`KafkaDelivery`: keyed by id, the record's ``updated_at`` as timestamp."""
    from serving.api.delivery import Record
    from streamrec.catalog.codec import CatalogKind, encode_record

    async def write(kind: CatalogKind, records: Sequence[CatalogRecord]) -> None:
        topic = items_topic if kind is CatalogKind.ITEMS else users_topic
        await delivery().deliver([Record(topic, r.key.encode(), encode_record(r), r.updated_ms) for r in records])

    return write


def default_services(
    feast_settings: FeastSettings,
    kafka: KafkaSettings | None = None,
    paths: PathsSettings | None = None,
    ui: UiSettings | None = None,
    guard: ApiGuardSettings | None = None,
) -> Services:
    """The real clients: Triton over gRPC (aio), Kafka producer and live consumer, Redis and Feast readiness,
    the catalog. Settings not given are read from the environment."""
    import anyio
    import redis.asyncio as aioredis

    from serving.api.catalog import Catalog
    from serving.api.delivery import KafkaDelivery
    from serving.api.live import kafka_feed_factory
    from serving.api.settings import ApiGuardSettings, UiSettings
    from serving.pipeline.stores import FeastUserFeatures
    from serving.settings import ServingSettings
    from streamrec.catalog.settings import CatalogSettings
    from streamrec.features import USER_COUNT_FEATURES
    from streamrec.pipeline_client import AsyncPipelineClient, LiveAvailability
    from streamrec.settings import KafkaSettings, PathsSettings, RedisSettings

    kafka = kafka or KafkaSettings.load()
    paths = paths or PathsSettings.load()
    ui = ui or UiSettings.load()
    guard = guard or ApiGuardSettings.load()
    redis_settings = RedisSettings.load()
    serving = ServingSettings.load()
    # The popularity fallback leaves out what the live catalog holds as unavailable, as the pipeline does.
    availability = (
        LiveAvailability(redis_settings.effective_url, prefix=CatalogSettings.load().live_prefix)
        if serving.live_catalog_enabled
        else None
    )
    client = AsyncPipelineClient(export_root=paths.export_root, availability=availability)
    redis_client = aioredis.Redis.from_url(redis_settings.effective_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    feast = FeastUserFeatures(
        feast_settings.repo,
        feast_settings.user_view,
        feast_settings.recent_items_field,
        USER_COUNT_FEATURES,
        redis_url=redis_settings.effective_url,
        project=feast_settings.project,
        registry=feast_settings.registry,
    )
    producer: list[KafkaDelivery] = []

    def delivery() -> KafkaDelivery:
        if not producer:  # created on first use: an API that only recommends never connects to Kafka
            producer.append(KafkaDelivery.from_settings(kafka, guard.delivery_timeout_s, guard.retry_after_s))
        return producer[0]

    send_event = event_sender(delivery, kafka.interactions_topic)
    catalog_settings = CatalogSettings.load()
    write_catalog = catalog_writer(delivery, catalog_settings.items_topic, catalog_settings.users_topic)

    async def triton() -> None:
        if not await client.ready():
            raise RuntimeError(f"ensemble {client.model} not ready at {client.settings.effective_grpc_url}")

    async def redis() -> None:
        await redis_client.execute_command("PING")

    async def feast_check() -> None:
        await anyio.to_thread.run_sync(feast.ping)

    async def close() -> None:
        await client.close()
        if availability is not None:
            await anyio.to_thread.run_sync(availability.close)
        await redis_client.aclose()
        if producer:
            await anyio.to_thread.run_sync(producer[0].close)

    def catalog() -> Catalog:
        default = paths.archive_root / "items.parquet"
        path = ui.catalog_path or (default if default.is_file() else None)
        return Catalog.load(path, paths.export_root, ui.known_users)

    return Services(
        recommend=client.recommend,
        send_event=send_event,
        checks={"triton": triton, "redis": redis, "feast": feast_check},
        close=close,
        catalog=catalog,
        live_feed=kafka_feed_factory(kafka, ui.stream_group_prefix),
        write_catalog=write_catalog,
    )
