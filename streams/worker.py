"""Start the worker: check topics, open Feast, load the catalog, then run the Faust app until stopped."""

from __future__ import annotations

import logging
import sys
from typing import Any

from streamrec.client.admin import TopicSpec, ensure_topics, existing_topics
from streamrec.errors import ConfigError, StoreUnavailableError
from streamrec.features import FEAST_ITEM_PUSH_SOURCE, FEAST_USER_PUSH_SOURCE
from streamrec.security import refuse_placeholder_secrets
from streamrec.settings import BloomSettings, FeastSettings, KafkaSettings, PathsSettings, RedisSettings
from streams.app import TABLE_NAMES, create_app
from streams.catalog import Catalog
from streams.faust_compat import check_faust_version
from streams.interfaces import WorkerConfig
from streams.settings import StreamsSettings

log = logging.getLogger(__name__)


#: What Faust gives a table's changelog topic: compacted (the latest value per key is the state).
CHANGELOG_CONFIG = (("cleanup.policy", "compact"),)


def changelog_topics(streams: StreamsSettings) -> list[str]:
    """Faust's names for the changelog topics of the worker's tables (``<app_id>-<table>-changelog``)."""
    return [f"{streams.app_id}-{table}-changelog" for table in TABLE_NAMES]


def _topics(streams: StreamsSettings, kafka: KafkaSettings) -> int:
    """Partitions of the interactions topic; creates the DLQ, recommendations and by-item topics when missing.

    The by-item topic and the tables' changelogs are internal (Faust would create them too), but Faust
    creates them while its consumer subscribes: on a loaded broker a subscription racing a new topic's
    metadata ignores it (the items agent gets no partitions until the next metadata refresh, minutes) or
    sees a changelog with 0 partitions (``PartitionsMismatch``, the worker stops). Created here, co-partitioned
    with the source (changelogs compacted, as Faust makes them), they exist before Faust starts.
    """
    have = existing_topics(kafka)
    source = streams.interactions(kafka)
    if source not in have:
        raise ConfigError(f"topic {source!r} does not exist (streamrec stack up creates it)", source="interactions")
    ensure_topics(
        kafka,
        [
            TopicSpec(streams.dlq(kafka), kafka.dlq_partitions),
            TopicSpec(streams.recommendations(kafka), kafka.recommendations_partitions),
            TopicSpec(streams.by_item, have[source]),
            *(TopicSpec(name, have[source], CHANGELOG_CONFIG) for name in changelog_topics(streams)),
        ],
    )
    return have[source]


def open_push(streams: StreamsSettings, feast: FeastSettings, redis: RedisSettings, paths: PathsSettings) -> Any:
    """The Feast push function, applying the stream views first if the registry lacks them."""
    from streams.feast_store import FeastDirectWrite, FeastPush, apply_repo, open_store

    sources = [FEAST_USER_PUSH_SOURCE, FEAST_ITEM_PUSH_SOURCE]
    store = open_store(feast, redis)
    try:
        known = {fv.stream_source.name for fv in store.list_feature_views() if getattr(fv, "stream_source", None)}
    except Exception:  # no registry file yet
        known = set()
    if not set(sources) <= known:
        log.info("Feast registry lacks the stream views: applying the feature repository")
        apply_repo(feast, redis, paths)
        store = open_store(feast, redis)
    try:
        return FeastDirectWrite(store, sources) if streams.feast_write == "direct" else FeastPush(store)
    except ConfigError:
        raise
    except Exception as exc:
        raise StoreUnavailableError(f"Feast store unusable: {str(exc).splitlines()[0][:200]}") from None


def build_config(streams: StreamsSettings | None = None, feast: FeastSettings | None = None) -> WorkerConfig:
    streams = streams or StreamsSettings.load()
    kafka, redis, bloom, paths = KafkaSettings.load(), RedisSettings.load(), BloomSettings.load(), PathsSettings.load()
    refuse_placeholder_secrets(kafka, redis)  # before any connection
    partitions = _topics(streams, kafka)
    catalog = Catalog.resolve(streams.catalog_path, paths.archive_root)
    push = open_push(streams, feast or FeastSettings.load(), redis, paths) if streams.feast_enabled else None
    return WorkerConfig(streams, kafka, redis, bloom, partitions, catalog, push)


def keep_torch_out() -> None:
    """Stop Feast from importing torch into the worker (~500 MB of RSS for nothing).

    ``feast.torch_wrapper`` imports torch eagerly whenever it is installed (the trainer needs it) and
    treats a failed import as "torch unavailable", which only disables tensor output of offline
    retrievals -- something the worker never does. A ``None`` entry makes that import fail at once.
    """
    if "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]


def run(streams: StreamsSettings | None = None) -> int:
    """Run until SIGINT/SIGTERM. Returns the exit code."""
    check_faust_version()  # before any connection: an untested Faust fails here, in one line
    keep_torch_out()
    config = build_config(streams)
    if config.streams.uvloop:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from faust import Worker

    config.streams.data_dir.mkdir(parents=True, exist_ok=True)
    app, _ = create_app(config)
    log.info(
        "worker %s: %s (%d partitions), catalog %s (%d items), Feast %s",
        config.streams.app_id,
        config.streams.interactions(config.kafka),
        config.partitions,
        config.catalog.source,
        len(config.catalog),
        config.streams.feast_write if config.push is not None else "off",
    )
    worker = Worker(app, loglevel=config.streams.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
