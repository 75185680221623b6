"""Settings come from STREAMREC_* variables; the three well-known URLs switch the local stack off."""

from __future__ import annotations

import pytest

from streamrec.errors import ConfigError
from streamrec.settings import (
    BloomSettings,
    KafkaSettings,
    RedisSettings,
    TritonSettings,
    describe,
    mask_url,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("STREAMREC_") or var in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "TRITON_URL"):
            monkeypatch.delenv(var)


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "TRITON_URL"):
        monkeypatch.delenv(var, raising=False)
    kafka, redis, triton = KafkaSettings.load(), RedisSettings.load(), TritonSettings.load()
    assert not kafka.external and kafka.bootstrap == "127.0.0.1:19092"
    assert not redis.external and redis.effective_url.endswith(":16379/0")
    assert not triton.external and triton.effective_grpc_url == "127.0.0.1:18001"


def test_well_known_variables_select_external_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@cache:6379/2")
    monkeypatch.setenv("TRITON_URL", "http://triton:8000")
    assert KafkaSettings.load().external and KafkaSettings.load().bootstrap == "broker-a:9092,broker-b:9092"
    assert RedisSettings.load().effective_url == "redis://:s3cret@cache:6379/2"
    assert TritonSettings.load().effective_grpc_url == "triton:8001"


def test_prefixed_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA_INTERACTIONS_PARTITIONS", "12")
    monkeypatch.setenv("STREAMREC_BLOOM_ERROR_RATE", "0.001")
    assert KafkaSettings.load().interactions_partitions == 12
    assert BloomSettings.load().error_rate == 0.001


def test_invalid_values_raise_one_line_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_BLOOM_ERROR_RATE", "2")
    with pytest.raises(ConfigError) as info:
        BloomSettings.load()
    assert "STREAMREC_BLOOM_ERROR_RATE" in str(info.value)
    assert "\n" not in str(info.value)


def test_secrets_are_masked_in_descriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://user:hunter2@cache:6379/0")
    monkeypatch.setenv("STREAMREC_KAFKA_SASL_PASSWORD", "hunter2")
    rows = describe(RedisSettings.load()) + describe(KafkaSettings.load())
    text = repr(rows)
    assert "hunter2" not in text
    assert "redis://user:***@cache:6379/0" in text
    assert all(doc for _, _, doc in rows), "every field is documented"


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_feast_settings_are_one_core_class_read_from_streamrec_feast(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from streamrec.settings import CORE_SETTINGS, FeastSettings
    from streams.settings import StreamsSettings

    monkeypatch.setenv("STREAMREC_FEAST_REPO", "/app/feature_repo")
    monkeypatch.setenv("STREAMREC_FEAST_PROJECT", "shop")
    monkeypatch.setenv("STREAMREC_FEAST_REGISTRY", "/data/feast/registry.db")
    feast = FeastSettings.load()
    assert (feast.repo, feast.project, feast.registry) == (
        Path("/app/feature_repo"),
        "shop",
        Path("/data/feast/registry.db"),
    )
    assert FeastSettings in CORE_SETTINGS
    assert not [
        name for name in StreamsSettings.model_fields if name in ("feast_repo", "feast_project", "feast_registry")
    ]


def test_a_moved_worker_feast_variable_is_refused_naming_its_new_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.settings import StreamsSettings

    monkeypatch.setenv("STREAMREC_STREAMS_FEAST_REGISTRY", "/data/feast/registry.db")
    with pytest.raises(ConfigError, match="STREAMREC_STREAMS_FEAST_REGISTRY: .*set STREAMREC_FEAST_REGISTRY instead"):
        StreamsSettings.load()
