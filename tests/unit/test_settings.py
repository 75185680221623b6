"""Settings come from STREAMREC_* variables; the three well-known URLs switch the local stack off."""

from __future__ import annotations

from pathlib import Path

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


# -- Kafka transport security -------------------------------------------------------------------------------


def _sasl_ssl(**overrides: object) -> KafkaSettings:
    values: dict[str, object] = {
        "bootstrap_servers": "kafka-0.example:9093,kafka-1.example:9093",
        "security_protocol": "SASL_SSL",
        "sasl_username": "worker",
        "sasl_password": "s3cret-pw",
    }
    values.update(overrides)
    return KafkaSettings.load(**values)


def test_security_protocol_is_one_of_the_four_kafka_protocols(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError, match="^STREAMREC_KAFKA_SECURITY_PROTOCOL: .*'SASL_SSL'"):
        KafkaSettings.load()
    monkeypatch.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "ssl")
    assert KafkaSettings.load().security_protocol == "SSL"


def test_sasl_mechanism_is_plain_or_scram(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="^STREAMREC_KAFKA_SASL_MECHANISM: "):
        _sasl_ssl(sasl_mechanism="GSSAPI")
    assert _sasl_ssl(sasl_mechanism="scram-sha-256").sasl_mechanism == "SCRAM-SHA-256"


def test_a_sasl_protocol_without_username_or_password_is_refused_in_one_line() -> None:
    for missing in ({"sasl_username": None}, {"sasl_password": ""}, {"sasl_password": None}):
        with pytest.raises(ConfigError, match="SASL_SSL needs STREAMREC_KAFKA_SASL_USERNAME and ") as info:
            _sasl_ssl(**missing)
        assert "\n" not in str(info.value)


def test_a_sasl_username_with_a_protocol_that_would_not_send_it_is_refused() -> None:
    with pytest.raises(ConfigError, match="^STREAMREC_KAFKA_SASL_USERNAME: .*SECURITY_PROTOCOL=SASL_SSL"):
        KafkaSettings.load(sasl_username="worker", sasl_password="pw")


def test_sasl_plain_over_plaintext_to_a_remote_broker_needs_allow_insecure() -> None:
    plain = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}
    with pytest.raises(ConfigError, match="password in clear to kafka-0.example:9093,kafka-1.example:9093"):
        _sasl_ssl(**plain)
    assert _sasl_ssl(**plain, allow_insecure=True).allow_insecure
    # Loopback brokers (the local stack, a port-forward) are not on the network.
    for local in ("127.0.0.1:9092", "localhost:9092", "[::1]:9092"):
        assert _sasl_ssl(**plain, bootstrap_servers=local).security_protocol == "SASL_PLAINTEXT"
    # SCRAM never sends the password itself.
    assert _sasl_ssl(security_protocol="SASL_PLAINTEXT").sasl_mechanism == "SCRAM-SHA-512"


def test_unchecked_certificate_host_names_to_a_remote_broker_need_allow_insecure() -> None:
    with pytest.raises(ConfigError, match="^STREAMREC_KAFKA_SSL_CHECK_HOSTNAME: "):
        _sasl_ssl(ssl_check_hostname=False)
    conf = _sasl_ssl(ssl_check_hostname=False, allow_insecure=True).client_config()
    assert conf["ssl.endpoint.identification.algorithm"] == "none"


def test_tls_files_with_a_protocol_without_tls_and_half_a_client_certificate_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^STREAMREC_KAFKA_SSL_CA_LOCATION: .*does not use TLS"):
        KafkaSettings.load(ssl_ca_location=tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match="needs both SSL_CERTIFICATE_LOCATION and SSL_KEY_LOCATION"):
        _sasl_ssl(ssl_certificate_location=tmp_path / "client.pem")


def test_client_config_carries_tls_and_sasl_for_every_librdkafka_client(tmp_path: Path) -> None:
    from streamrec.client.producer import producer_config

    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("pem")
    settings = _sasl_ssl(ssl_ca_location=ca, ssl_certificate_location=cert, ssl_key_location=key, ssl_key_password="kp")
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "worker",
        "sasl.password": "s3cret-pw",
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.key.password": "kp",
    }
    assert expected.items() <= settings.client_config().items()
    assert expected.items() <= producer_config(settings).items()
    assert _sasl_ssl().client_config()["ssl.ca.location"] == "probe"  # the system CAs
    plaintext = KafkaSettings.load().client_config()
    assert plaintext["security.protocol"] == "PLAINTEXT" and not [k for k in plaintext if k.startswith(("sasl", "ssl"))]


def test_a_missing_ca_file_is_named_when_a_client_is_configured(tmp_path: Path) -> None:
    settings = _sasl_ssl(ssl_ca_location=tmp_path / "absent.pem")
    with pytest.raises(ConfigError, match=f"^STREAMREC_KAFKA_SSL_CA_LOCATION: file {tmp_path}/absent.pem does not"):
        settings.client_config()


def test_the_ssl_context_for_aiokafka_verifies_certificates_and_host_names() -> None:
    import ssl

    from streamrec.security import kafka_ssl_context

    context = kafka_ssl_context(_sasl_ssl())
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert kafka_ssl_context(_sasl_ssl(security_protocol="SASL_PLAINTEXT")) is None


def test_faust_credentials_follow_the_security_protocol() -> None:
    """Faust picks its security protocol from the credentials: each setting must arrive as itself."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streamrec.security import faust_broker_credentials

    def faust_auth(settings: KafkaSettings) -> dict[str, object]:
        return dict(credentials_to_aiokafka_auth(faust_broker_credentials(settings)))

    sasl_ssl = faust_auth(_sasl_ssl(sasl_mechanism="SCRAM-SHA-256"))
    assert (sasl_ssl["security_protocol"], sasl_ssl["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (sasl_ssl["sasl_plain_username"], sasl_ssl["sasl_plain_password"]) == ("worker", "s3cret-pw")
    assert sasl_ssl["ssl_context"] is not None
    sasl_plain = faust_auth(_sasl_ssl(security_protocol="SASL_PLAINTEXT"))
    assert (sasl_plain["security_protocol"], sasl_plain["ssl_context"]) == ("SASL_PLAINTEXT", None)
    tls_only = faust_auth(KafkaSettings.load(bootstrap_servers="kafka:9093", security_protocol="SSL"))
    assert tls_only["security_protocol"] == "SSL" and tls_only["ssl_context"] is not None
    assert faust_auth(KafkaSettings.load())["security_protocol"] == "PLAINTEXT"


def test_aiokafka_kwargs_match_the_librdkafka_config() -> None:
    from streamrec.security import aiokafka_security_kwargs

    kwargs = aiokafka_security_kwargs(_sasl_ssl())
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("worker", "s3cret-pw")


def test_kafka_secrets_are_masked_in_descriptions() -> None:
    text = repr(describe(_sasl_ssl(ssl_key_password="key-pass-1")))
    assert "s3cret-pw" not in text and "key-pass-1" not in text


# -- Redis AUTH and TLS -------------------------------------------------------------------------------------


def test_rediss_urls_get_verifying_tls_options(tmp_path: Path) -> None:
    settings = RedisSettings.load(
        url="rediss://:pw@cache:6380/0",
        ssl_ca_file=tmp_path / "ca.pem",
        ssl_certfile=tmp_path / "c.pem",
        ssl_keyfile=tmp_path / "c.key",
    )
    kwargs = settings.client_kwargs()
    assert kwargs["ssl_cert_reqs"] == "required" and kwargs["ssl_check_hostname"] is True
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
        str(tmp_path / "ca.pem"),
        str(tmp_path / "c.pem"),
        str(tmp_path / "c.key"),
    )
    plain = RedisSettings.load(url="redis://cache:6379/0").client_kwargs()
    assert not [k for k in plain if k.startswith("ssl")]


def test_redis_tls_options_with_a_plain_url_are_refused_without_printing_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^STREAMREC_REDIS_SSL_CA_FILE: ") as info:
        RedisSettings.load(url="redis://:hunter2@cache:6379/0", ssl_ca_file=tmp_path / "ca.pem")
    assert "hunter2" not in str(info.value) and "redis://:***@cache:6379/0" in str(info.value)
    with pytest.raises(ConfigError, match="^REDIS_URL: expected a redis:// or rediss:// URL"):
        RedisSettings.load(url="http://cache:6379")
    with pytest.raises(ConfigError, match="needs both SSL_CERTFILE and SSL_KEYFILE"):
        RedisSettings.load(url="rediss://cache:6380/0", ssl_certfile=tmp_path / "c.pem")


def test_masked_url_hides_the_redis_password() -> None:
    assert RedisSettings.load(url="rediss://default:hunter2@cache:6380/1").masked_url == (
        "rediss://default:***@cache:6380/1"
    )
