"""The KafkaUsers' ACLs on a real broker: each component's Kafka operations, done by its own client code,
succeed with exactly the ACLs its KafkaUser grants, and operations it must not do are refused.

The broker is the security tests' single-node KRaft broker with a SASL_SSL (SCRAM-SHA-512) listener and a CA
made at test time, here with the standard authorizer (nothing allowed without an ACL). Its SCRAM users are the
KafkaUsers of the rendered gpu overlay, its ACLs are created from their ``spec.authorization.acls`` through
the admin API, its topics from the KafkaTopics: what the Strimzi operators would do with the same resources,
done by hand (Strimzi itself is not run). Skipped with the reason when Java, the Kafka jars, kustomize/kubectl
or the cryptography package are missing.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from streamrec.client.admin import TopicSpec, ensure_topics
from streamrec.client.consumer import consumer_config
from streamrec.client.producer import producer_config
from streamrec.settings import KafkaSettings, StackSettings

from tests.k8s.manifests import Bundle, kustomize_command, rendered_overlay
from tests.security.broker import ADMIN_USER, SaslSslKafka
from tests.security.conftest import BROKER_START_TIMEOUT_S, _kafka_missing, free_port

pytestmark = pytest.mark.slow

_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "cluster": ResourceType.BROKER}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}


class AuthorizingKafka(SaslSslKafka):
    """The SASL_SSL broker with ACLs enforced. The controller listener (PLAINTEXT, loopback, controller
    requests only) authenticates nobody, so its ANONYMOUS principal is a super user like the admin."""

    def _properties(self) -> str:
        return super()._properties() + (
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
            f"super.users=User:{ADMIN_USER};User:ANONYMOUS\n"
            "allow.everyone.if.no.acl.found=false\n"
        )


@dataclass
class Cluster:
    port: int
    controller_port: int
    ca_file: Path
    passwords: dict[str, str]

    def settings(self, user: str) -> KafkaSettings:
        return KafkaSettings.load(
            bootstrap_servers=None,  # the broker's own address: 127.0.0.1:<port>, which its certificate names
            local_port=self.port,
            local_controller_port=self.controller_port,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=user,
            sasl_password=self.passwords[user],
            ssl_ca_location=self.ca_file,
            client_id=f"acl-test-{user}",
            replication_factor=1,
            delivery_timeout_ms=10_000,
        )


def acl_bindings(user: dict[str, Any]) -> list[AclBinding]:
    """A KafkaUser's ``allow`` ACLs as admin-API bindings for principal ``User:<name>``."""
    out = []
    for acl in user["spec"]["authorization"]["acls"]:
        r = acl["resource"]
        for op in acl["operations"]:
            out.append(
                AclBinding(
                    _RESOURCES[r["type"]],
                    r.get("name", "kafka-cluster"),
                    _PATTERNS[r.get("patternType", "literal")],
                    f"User:{user['metadata']['name']}",
                    "*",
                    AclOperation[re.sub(r"(?<!^)(?=[A-Z])", "_", op).upper()],
                    AclPermissionType.ALLOW,
                )
            )
    return out


@pytest.fixture(scope="module")
def manifests() -> Bundle:
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl is installed: overlays not rendered")
    return Bundle(rendered_overlay("gpu"))


@pytest.fixture(scope="module")
def cluster(manifests: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pytest.importorskip("cryptography", reason="the cryptography package generates the test CA")
    from tests.security.certs import ThrowawayCA

    stack = StackSettings.load(kafka_heap="512m", start_timeout_s=BROKER_START_TIMEOUT_S)
    if reason := _kafka_missing(stack):
        pytest.skip(reason)
    users = manifests.of("KafkaUser")
    run_dir = tmp_path_factory.mktemp("kafka-acl-run")
    ca = ThrowawayCA(run_dir / "pki")
    handle = Cluster(free_port(), free_port(), ca.cert, {u.name: secrets.token_urlsafe(16) for u in users})
    broker_cert = ca.issue("kafka-broker")
    broker = AuthorizingKafka(
        run_dir,
        stack,
        KafkaSettings.load(
            bootstrap_servers=None, local_port=handle.port, local_controller_port=handle.controller_port
        ),
        keystore=broker_cert.bundle(run_dir / "broker-keystore.pem"),
        truststore=ca.cert,
        users=dict(handle.passwords),
    )
    handle.passwords[ADMIN_USER] = broker.admin_password
    broker.kafka = handle.settings(ADMIN_USER)  # the health check's admin client logs in as the super user
    try:
        broker.start(stack.start_timeout_s, lambda _: None)
        admin_settings = handle.settings(ADMIN_USER)
        ensure_topics(
            admin_settings,
            [
                TopicSpec(
                    t.obj["spec"].get("topicName") or t.name,
                    int(t.obj["spec"]["partitions"]),
                    tuple(
                        (k, str(v))
                        for k, v in (t.obj["spec"].get("config") or {}).items()
                        if k != "min.insync.replicas"
                    ),
                )
                for t in manifests.of("KafkaTopic")
            ],
        )
        admin = AdminClient(admin_settings.client_config())
        bindings = [b for u in users for b in acl_bindings(u.obj)]
        for future in admin.create_acls(bindings).values():
            future.result(30)
        # Created ACLs reach the broker's authorizer through the metadata log a moment later.
        anything: Any = None  # a filter's None matches every name, principal and host
        everything = AclBindingFilter(
            ResourceType.ANY,
            anything,
            ResourcePatternType.ANY,
            anything,
            anything,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        deadline = time.monotonic() + 30
        while len(admin.describe_acls(everything).result(30)) < len(bindings):
            assert time.monotonic() < deadline, "the broker did not apply the ACLs within 30 s"
            time.sleep(0.2)
        yield handle
    finally:
        broker.stop()


def _produce(settings: KafkaSettings, topic: str, value: bytes = b"{}") -> KafkaError | None:
    """Produce one message with the SDK's producer configuration; the delivery error, or None."""
    errors: list[KafkaError | None] = []
    producer = Producer(producer_config(settings))
    try:
        producer.produce(topic, key=b"k", value=value, on_delivery=lambda err, _msg: errors.append(err))
        producer.flush(20)
    except KafkaException as exc:  # a fatal error: no producer id without any Write right
        return exc.args[0]  # type: ignore[no-any-return]
    return errors[0] if errors else KafkaError(KafkaError._MSG_TIMED_OUT)


def _consume_one(settings: KafkaSettings, topic: str, group: str, *, commit: bool = False) -> Any:
    """Join ``group``, read one message of ``topic`` from the start (committing it if asked); the message, or
    the first error the consumer reported."""
    consumer = Consumer(
        consumer_config(settings, group, **{"auto.offset.reset": "earliest", "enable.auto.commit": False})
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is None and commit:
                consumer.commit(message=msg, asynchronous=False)
            return msg if msg.error() is None else msg.error()
        return None
    finally:
        consumer.close()


def _refused(result: Any) -> bool:
    codes = (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    )
    return isinstance(result, KafkaError) and result.code() in codes


def test_api_user_writes_events_and_the_catalog_and_reads_recommendations_only(cluster: Cluster) -> None:
    from serving.api.settings import UiSettings
    from streamrec.client.consumer import RecommendationConsumer

    api = cluster.settings("api")
    for topic in ("interactions", "items", "users"):
        assert _produce(api, topic) is None, topic
    assert _produce(cluster.settings(ADMIN_USER), "recommendations", b'{"user_id": "u1"}') is None
    live = RecommendationConsumer(
        api, group_id=f"{UiSettings().stream_group_prefix}-pod-1-0", from_beginning=True
    )  # the live stream's consumer
    try:
        assert live.wait_for_assignment(30.0)
    finally:
        live.close()
    assert _refused(_produce(api, "recommendations"))
    assert _refused(_consume_one(api, "interactions", "streamrec-api-live-x"))
    assert _refused(_consume_one(api, "recommendations", "someone-elses-group"))


def test_worker_user_creates_its_internal_topics_and_reads_interactions_in_its_group(
    cluster: Cluster,
) -> None:
    from streams.settings import StreamsSettings
    from streams.worker import CHANGELOG_CONFIG, changelog_topics

    worker, streams = cluster.settings("worker"), StreamsSettings()
    internal = [TopicSpec(streams.by_item, 6)] + [
        TopicSpec(n, 6, CHANGELOG_CONFIG) for n in changelog_topics(streams)
    ]
    assert ensure_topics(worker, internal) == [s.name for s in internal]  # Create on the app-id prefix
    for topic in ("recommendations", "interactions.dlq", streams.by_item, changelog_topics(streams)[0]):
        assert _produce(worker, topic) is None, topic
    assert _produce(cluster.settings(ADMIN_USER), "interactions") is None
    msg = _consume_one(worker, "interactions", streams.app_id, commit=True)
    assert not isinstance(msg, KafkaError) and msg is not None and msg.topic() == "interactions"
    assert _refused(_produce(worker, "interactions"))
    with pytest.raises(Exception, match="TOPIC_AUTHORIZATION_FAILED|not authorized"):
        ensure_topics(worker, [TopicSpec("not-the-workers-topic", 1)])


def test_archiver_user_reads_interactions_in_its_group_and_writes_nothing(cluster: Cluster) -> None:
    archiver = cluster.settings("archiver")
    assert _produce(cluster.settings(ADMIN_USER), "interactions") is None
    msg = _consume_one(archiver, "interactions", "streamrec-archiver", commit=True)
    assert not isinstance(msg, KafkaError) and msg is not None
    assert _refused(_consume_one(archiver, "interactions", "another-group"))
    assert _refused(_produce(archiver, "interactions.dlq"))


def test_trainer_and_catalog_sync_read_the_catalog_and_dead_letter_rejects(cluster: Cluster) -> None:
    from consumers.catalog_io import COMPONENT, CatalogDeadLetters, KafkaCatalogFeed, read_dead_lettered
    from streamrec.catalog.codec import CatalogKind
    from streamrec.catalog.settings import CatalogSettings
    from streamrec.client.catalog import read_catalog
    from streamrec.errors import InvalidEventError

    catalog = CatalogSettings()
    assert _produce(cluster.settings(ADMIN_USER), "items", b"not a catalog record") is None
    state, rejected = read_catalog(cluster.settings("trainer"), catalog, CatalogKind.ITEMS, timeout_s=60)
    assert rejected >= 1  # the bad record went to catalog.dlq as the trainer
    sync = cluster.settings("catalog-sync")
    already = read_dead_lettered(sync, catalog.dlq_topic, COMPONENT)
    feed = KafkaCatalogFeed(sync, catalog)
    try:
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while not feed.caught_up() and time.monotonic() < deadline:
            records += feed.poll(100, 0.5)
        assert feed.caught_up() and records
    finally:
        feed.close()
    letters = CatalogDeadLetters(sync, catalog, already)
    assert letters.reject(InvalidEventError("<payload>", "not JSON"), records[0])
    letters.flush(20)
    for user in ("trainer", "catalog-sync"):
        assert _refused(_produce(cluster.settings(user), "items")), user


def test_keda_user_reads_lag_and_nothing_else(cluster: Cluster) -> None:
    keda = cluster.settings("keda")
    assert _produce(cluster.settings(ADMIN_USER), "interactions") is None
    consumer = Consumer(consumer_config(keda, f"keda-{uuid.uuid4().hex[:6]}"))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition("interactions", 0), timeout=20)
        assert high >= low >= 0
    finally:
        consumer.close()
    admin = AdminClient(keda.client_config())
    for group in ("streamrec-worker", "streamrec-archiver"):
        request = ConsumerGroupTopicPartitions(group, [TopicPartition("interactions", p) for p in range(6)])
        (future,) = admin.list_consumer_group_offsets([request]).values()
        assert future.result(20).group_id == group
    assert _refused(_consume_one(keda, "interactions", "streamrec-worker"))
    assert _refused(_produce(keda, "interactions"))
