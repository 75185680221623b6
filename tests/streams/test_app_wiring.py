"""The worker's Faust wiring, built without a broker: which agents read which topics, tables and their codecs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamrec.settings import BloomSettings, KafkaSettings, RedisSettings
from streams.app import ITEM_CODEC, TABLE_NAMES, USER_CODEC, create_app
from streams.catalog import Catalog
from streams.interfaces import WorkerConfig
from streams.settings import StreamsSettings
from streams.worker import CHANGELOG_CONFIG, changelog_topics


def test_create_app_wires_both_agents_tables_and_pages_and_defers_the_runtime(tmp_path: Path) -> None:
    streams = StreamsSettings(app_id="wiring-test", interactions_topic="wiring.in", data_dir=tmp_path)
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    config = WorkerConfig(streams, kafka, RedisSettings(), BloomSettings(), 3, Catalog({}, "test"), None)
    app, runtime = create_app(config)

    readers = {name: agent.channel.get_topic_name() for name, agent in app.agents.items()}
    assert readers == {"wiring-test.interactions": "wiring.in", "wiring-test.items": "wiring-test-by-item"}
    for name, codec in (("users", USER_CODEC), ("items", ITEM_CODEC)):
        changelog = app.tables[name].changelog_topic
        assert (changelog.get_topic_name(), changelog.value_serializer) == (f"wiring-test-{name}-changelog", codec)
        assert changelog.partitions == 3
    assert runtime.interactions is None and runtime.items is None, "processors are built on the event loop"
    # The worker creates these before Faust starts (streams.worker): same names, compacted like Faust's own.
    assert changelog_topics(streams) == [app.tables[n].changelog_topic.get_topic_name() for n in TABLE_NAMES]
    assert all(app.tables[n].changelog_topic.compacting for n in TABLE_NAMES)
    assert dict(CHANGELOG_CONFIG) == {"cleanup.policy": "compact"}
    assert app.conf.table_standby_replicas == 0, "no standby copies unless asked for (each decodes every write)"
    shadowed = StreamsSettings(
        app_id="wiring-test2", interactions_topic="wiring.in", data_dir=tmp_path, standby_replicas=1
    )
    app2, _ = create_app(WorkerConfig(shadowed, kafka, RedisSettings(), BloomSettings(), 3, Catalog({}, "t"), None))
    assert app2.conf.table_standby_replicas == 1


def test_the_web_server_binds_loopback_and_serves_debug_views_only_when_enabled(tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    pages = {}
    for debug in (False, True):
        streams = StreamsSettings(app_id="web-test", data_dir=tmp_path / str(debug), web_debug_enabled=debug)
        app, _ = create_app(WorkerConfig(streams, kafka, RedisSettings(), BloomSettings(), 3, Catalog({}, "t"), None))
        assert app.conf.web_bind == "127.0.0.1"
        faust_views = {prefix for prefix, _ in app.web.blueprints._enabled}
        pages[debug] = (set(app.web.views), faust_views)
    assert pages[False] == ({"/metrics"}, {""}), "only /metrics and Faust's static production index"
    views, faust_views = pages[True]
    assert views == {"/metrics", "/debug/tasks"} and {"/table", "/router"} <= faust_views


def test_faust_gets_tls_with_sasl_when_the_protocol_says_sasl_ssl(tmp_path: Path) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from tests.security.certs import ThrowawayCA

    kafka = KafkaSettings(
        bootstrap_servers="broker.example:9093",
        security_protocol="SASL_SSL",
        sasl_username="worker",
        sasl_password="not-a-placeholder-1",
        ssl_ca_location=ThrowawayCA(tmp_path / "ca").cert,
    )
    streams = StreamsSettings(app_id="tls-test", data_dir=tmp_path)
    app, _ = create_app(WorkerConfig(streams, kafka, RedisSettings(), BloomSettings(), 3, Catalog({}, "t"), None))
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL" and auth["ssl_context"] is not None
    assert auth["sasl_plain_username"] == "worker"


def test_lag_gauges_take_the_brokers_log_end_when_the_last_fetch_is_stale() -> None:
    """A worker behind its backlog stops fetching a full partition: its fetched end goes stale, the broker's
    does not, and the gauge must show the real lag."""
    import asyncio

    from faust.types import TP

    from streams.metrics import WorkerMetrics, make_lag_sensor

    tp = TP("lag-in", 0)

    class Consumer:
        _committed_offset = {tp: 100}

        def assignment(self) -> set[Any]:
            return {tp}

        def highwater(self, partition: Any) -> int:
            return 150  # what the last fetch saw, long ago

        async def highwaters(self, *partitions: Any) -> dict[Any, int]:
            return {p: 90_150 for p in partitions}  # the log has grown since

    metrics = WorkerMetrics()
    sensor = make_lag_sensor(metrics, ["lag-in"], Consumer)
    sensor.refresh()
    assert metrics.consumer_lag.labels("lag-in", "0")._value.get() == 50
    asyncio.run(sensor.refresh_ends())
    sensor.refresh()
    assert metrics.consumer_lag.labels("lag-in", "0")._value.get() == 90_050
