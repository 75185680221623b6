"""Every Kafka client the project uses, against a real broker that only has a SASL_SSL (SCRAM-SHA-512) listener
and a certificate from a CA generated at test time: confluent-kafka (producer SDK, consumer, admin) with
``KafkaSettings.client_config()``, and aiokafka (Faust's client) with the Faust credentials."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from streamrec.client.admin import TopicSpec, ensure_topics
from streamrec.client.consumer import consumer_config
from streamrec.client.producer import producer_config
from streamrec.security import aiokafka_security_kwargs, faust_broker_credentials
from streamrec.settings import KafkaSettings
from tests.security.conftest import SecureKafka

pytestmark = pytest.mark.slow
ROUND_TRIP_TIMEOUT_S = 30.0


def _topic(settings: KafkaSettings) -> str:
    name = f"secure.{uuid.uuid4().hex[:10]}"
    ensure_topics(settings, [TopicSpec(name, 1)])
    return name


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _connection_errors(settings: KafkaSettings) -> tuple[KafkaException | None, list[str]]:
    """Ask an admin client with ``settings`` for metadata: the exception (if any), and the errors and log lines
    librdkafka reported meanwhile."""
    errors: list[KafkaError] = []
    captured = _Captured()
    logger = logging.getLogger(f"test.kafka.{uuid.uuid4().hex}")
    logger.addHandler(captured)
    logger.propagate = False
    admin = AdminClient({**settings.client_config(), "error_cb": errors.append, "logger": logger})
    failure: KafkaException | None = None
    try:
        admin.list_topics(timeout=8)
    except KafkaException as exc:
        failure = exc
    admin.poll(0.5)  # serves the error callbacks
    return failure, [e.str() for e in errors] + captured.lines


def test_confluent_producer_and_consumer_round_trip_over_sasl_ssl(secure_kafka: SecureKafka) -> None:
    settings = secure_kafka.settings()
    assert settings.client_config()["security.protocol"] == "SASL_SSL"
    topic = _topic(settings)
    sent = [f"event-{i}".encode() for i in range(20)]
    producer = Producer(producer_config(settings))
    for i, value in enumerate(sent):
        producer.produce(topic, value=value, key=f"user-{i % 3}".encode())
    assert producer.flush(ROUND_TRIP_TIMEOUT_S) == 0

    consumer = Consumer(consumer_config(settings, f"g-{uuid.uuid4().hex}", **{"auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    received: list[bytes] = []
    try:
        for _ in range(int(ROUND_TRIP_TIMEOUT_S)):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                received.append(msg.value())
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert received == sent


def test_aiokafka_round_trip_with_the_faust_credentials_and_ssl_context(secure_kafka: SecureKafka) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = secure_kafka.settings()
    topic = _topic(settings)
    # Exactly what Faust's aiokafka transport passes to its producer and consumers.
    faust_auth: dict[str, Any] = dict(credentials_to_aiokafka_auth(faust_broker_credentials(settings)))
    assert faust_auth["security_protocol"] == "SASL_SSL"
    assert faust_auth["sasl_mechanism"] == "SCRAM-SHA-512"

    async def round_trip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, **faust_auth)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"faust-{i}".encode(), key=b"user-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.bootstrap,
            group_id=f"g-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
            **aiokafka_security_kwargs(settings),
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            while len(got) < 5:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    got.extend(r.value for r in records if r.value is not None)
        finally:
            await consumer.stop()
        return got

    received = asyncio.run(asyncio.wait_for(round_trip(), ROUND_TRIP_TIMEOUT_S))
    assert received == [f"faust-{i}".encode() for i in range(5)]


def _aiokafka_connect(settings: KafkaSettings) -> None:
    from aiokafka import AIOKafkaProducer

    async def connect() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, **aiokafka_security_kwargs(settings))
        try:
            await producer.start()
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(connect(), ROUND_TRIP_TIMEOUT_S))


def test_a_wrong_password_is_refused_by_the_broker(secure_kafka: SecureKafka, caplog: pytest.LogCaptureFixture) -> None:
    from aiokafka.errors import KafkaConnectionError

    wrong = secure_kafka.settings(sasl_password="not-" + secure_kafka.password)
    exc, errors = _connection_errors(wrong)
    assert exc is not None
    assert any("SASL authentication error" in e and "invalid credentials" in e for e in errors), errors

    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        _aiokafka_connect(wrong)
    assert "SaslAuthenticationFailed" in caplog.text and "invalid credentials" in caplog.text


def test_the_right_credentials_of_the_same_client_are_accepted(secure_kafka: SecureKafka) -> None:
    exc, errors = _connection_errors(secure_kafka.settings())
    assert exc is None and not errors, errors


def test_a_client_without_the_ca_cannot_verify_the_broker(
    secure_kafka: SecureKafka, caplog: pytest.LogCaptureFixture
) -> None:
    from aiokafka.errors import KafkaConnectionError

    no_ca = secure_kafka.settings(ssl_ca_location=None)  # the system CAs, which never signed the test CA
    exc, errors = _connection_errors(no_ca)
    assert exc is not None
    assert any("certificate verify failed" in e for e in errors), errors

    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        _aiokafka_connect(no_ca)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_a_plaintext_client_gets_nothing_from_the_tls_listener(secure_kafka: SecureKafka) -> None:
    plain = KafkaSettings.load(bootstrap_servers=None, local_port=secure_kafka.port, security_protocol="PLAINTEXT")
    exc, _ = _connection_errors(plain)
    assert exc is not None


def _faust_app(settings: KafkaSettings, credentials: Any, datadir: Path) -> Any:
    import faust

    return faust.App(
        f"security-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=credentials,
        autodiscover=False,
        web_enabled=False,
        store="memory://",
        datadir=str(datadir),
    )


def test_a_faust_app_produces_over_sasl_ssl_with_the_core_credentials(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    settings = secure_kafka.settings()
    topic = _topic(settings)
    app = _faust_app(settings, faust_broker_credentials(settings), tmp_path)

    async def send() -> None:
        await app.producer.start()
        try:
            await app.producer.send_and_wait(
                topic, b"user-1", b"from-faust", partition=None, timestamp=None, headers=None
            )
        finally:
            await app.producer.stop()

    asyncio.run(asyncio.wait_for(send(), ROUND_TRIP_TIMEOUT_S))
    consumer = Consumer(consumer_config(settings, f"g-{uuid.uuid4().hex}", **{"auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    try:
        values = []
        for _ in range(int(ROUND_TRIP_TIMEOUT_S)):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                values.append((msg.key(), msg.value()))
                break
    finally:
        consumer.close()
    assert values == [(b"user-1", b"from-faust")]


def test_faust_sasl_credentials_without_an_ssl_context_cannot_reach_the_sasl_ssl_listener(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    """SASL credentials alone make Faust speak SASL_PLAINTEXT, whatever security_protocol says."""
    from aiokafka.errors import KafkaConnectionError
    from faust.auth import SASLCredentials

    settings = secure_kafka.settings()
    bare = SASLCredentials(username=secure_kafka.user, password=secure_kafka.password, mechanism="SCRAM-SHA-512")
    app = _faust_app(settings, bare, tmp_path)

    async def start() -> None:
        await app.producer.start()
        await app.producer.stop()

    with pytest.raises((KafkaConnectionError, TimeoutError)):
        asyncio.run(asyncio.wait_for(start(), ROUND_TRIP_TIMEOUT_S))
