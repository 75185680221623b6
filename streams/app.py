"""The worker's Faust app, wired: topics, changelog-backed tables, then agents, timers and views.

The parts live in their own modules and meet through :mod:`streams.interfaces`:

* :mod:`streams.agents` -- batches of events to :mod:`streams.processors`, offsets held until durable;
* :mod:`streams.timers` -- offset-gap repair and the consumer-lag gauges;
* :mod:`streams.views` -- ``/metrics`` (and ``/debug/tasks`` where debug views are on);
* :mod:`streams.runtime` -- Redis, Feast pusher, refresher and processors, created on the event loop;
* :mod:`streams.faust_compat` -- every use of Faust beyond its public API, and the version check.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from streamrec.security import faust_broker_credentials
from streamrec.settings import KafkaSettings
from streams.faust_compat import (
    check_faust_version,
    guard_commit_head,
    guard_read_offsets,
    register_codec,
    set_table_serializers,
)
from streams.interfaces import WorkerConfig, WorkerTables, WorkerTopics
from streams.metrics import WorkerMetrics
from streams.processors import Send
from streams.runtime import Runtime
from streams.state import dump_item, dump_user, load_item, load_user

if TYPE_CHECKING:
    from faust.types import AppT, TopicT

#: The state tables (their changelog topics are ``<app_id>-<name>-changelog``).
TABLE_NAMES = ("users", "items")
USER_CODEC = "streamrec_user_state"
ITEM_CODEC = "streamrec_item_state"

__all__ = ["WorkerConfig", "broker_url", "create_app"]


def broker_url(kafka: KafkaSettings) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in kafka.bootstrap.split(",") if server.strip())


def build_faust_app(config: WorkerConfig) -> AppT:
    import faust

    s, kafka = config.streams, config.kafka
    return faust.App(
        s.app_id,
        broker=broker_url(kafka),
        broker_credentials=faust_broker_credentials(kafka),  # TLS and SASL as security_protocol says
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
        # Faust's own views (table contents, key routing, statistics, the graph) have no authentication:
        # served only where the operator turned the debug views on.
        web_tables_enabled=s.web_debug_enabled,
        web_router_enabled=s.web_debug_enabled,
        web_stats_enabled=s.web_debug_enabled,
        web_graph_enabled=s.web_debug_enabled,
        web_metrics_enabled=False,
        topic_partitions=config.partitions,
        table_standby_replicas=s.standby_replicas,
        topic_replication_factor=kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Held batches are re-read after a restart or rebalance anyway (idempotently), so never let a stop
        # or rebalance wait on them (a Feast outage would otherwise hang both).
        stream_wait_empty=False,
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
    )


def declare_topics(app: AppT, config: WorkerConfig) -> WorkerTopics:
    s, kafka = config.streams, config.kafka

    def raw(name: str, **kwargs: Any) -> TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", **kwargs)

    return WorkerTopics(
        interactions=raw(s.interactions(kafka)),
        by_item=raw(s.by_item, partitions=config.partitions, internal=True),
        dlq=raw(s.dlq(kafka)),
        recommendations=raw(s.recommendations(kafka)),
    )


def declare_tables(app: AppT, config: WorkerConfig) -> WorkerTables:
    """The state tables, co-partitioned with the source; their values go to the changelog through our codecs."""
    register_codec(USER_CODEC, dump_user, load_user)
    register_codec(ITEM_CODEC, dump_item, load_item)
    users = app.Table("users", partitions=config.partitions, help="Per-user state (streams.state.UserState).")
    items = app.Table("items", partitions=config.partitions, help="Per-item state (streams.state.ItemState).")
    set_table_serializers(users, "raw", USER_CODEC)
    set_table_serializers(items, "raw", ITEM_CODEC)
    return WorkerTables(users=users, items=items)


def sender(topic: TopicT) -> Send:
    """Faust's ``send`` returns once the message is queued; what it returns is the broker's acknowledgement."""

    async def send(key: bytes | None, value: bytes, partition: int | None = None) -> Awaitable[Any]:
        return await topic.send(key=key, value=value, partition=partition)

    return send


def create_app(config: WorkerConfig, metrics: WorkerMetrics | None = None) -> tuple[AppT, Runtime]:
    """The Faust app and its runtime (started by the first agent, closed before the app shuts down)."""
    from streams.agents import register_agents
    from streams.timers import register_eviction, register_timers
    from streams.views import register_views

    check_faust_version()
    guard_commit_head()
    guard_read_offsets()
    metrics = metrics or WorkerMetrics()
    app = build_faust_app(config)
    topics = declare_topics(app, config)
    tables = declare_tables(app, config)
    runtime = Runtime(
        config,
        metrics,
        tables,
        dlq=sender(topics.dlq),
        by_item=sender(topics.by_item),
        recommendations=sender(topics.recommendations),
    )
    register_agents(app, topics, runtime, config.streams)
    register_timers(app, topics, metrics, config.streams)
    register_eviction(app, topics, tables, metrics, config.streams)
    register_views(app, metrics, debug=config.streams.web_debug_enabled)

    async def close_runtime(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await runtime.close()

    app.on_before_shutdown.connect(close_runtime)  # type: ignore[arg-type]  # mode's stub rejects async receivers
    return app, runtime
