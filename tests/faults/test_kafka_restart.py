"""A Kafka broker (this test's own) stopped and started again mid-stream: the producer SDK keeps sending,
the worker and the archiver resume; nothing is lost and nothing is counted twice."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from streamrec.archive import read_interactions
from streamrec.client import InteractionProducer
from streamrec.client.admin import TopicSpec, ensure_topics
from streamrec.client.producer import DeliveryStats
from streamrec.schemas.events import InteractionEvent
from streamrec.stack.kafka import KafkaComponent
from tests.faults.conftest import archiver_env, run_archiver
from tests.streams.test_worker import assert_bloom_complete, assert_features_match, make_events, with_duplicates

pytestmark = pytest.mark.integration

PARTITIONS = 3


def produce_through_restart(
    broker: KafkaComponent,
    topic: str,
    events: list[InteractionEvent],
    restart_after: int,
    rate: float,
    consuming: Callable[[], None],
) -> tuple[DeliveryStats, float]:
    """Send at ``rate``/s; after ``restart_after`` events, once ``consuming()`` returned (the consumers are
    mid-stream), the broker is stopped and started again while the producer keeps sending.
    Returns the delivery stats and how long the broker was down."""
    down_for = 0.0
    restarted = threading.Event()

    def restart() -> None:
        nonlocal down_for
        began = time.monotonic()
        broker.stop()
        time.sleep(3.0)
        broker.start(180.0, lambda _: None)
        down_for = time.monotonic() - began
        restarted.set()

    producer = InteractionProducer(broker.kafka, topic=topic)
    began = time.monotonic()
    restarter = threading.Thread(target=restart)
    for k, event in enumerate(events):
        if k == restart_after:
            consuming()
            restarter.start()
        producer.send(event)
        if k % 25 == 0:
            delay = k / rate - (time.monotonic() - began)
            if delay > 0:
                time.sleep(delay)
    restarter.join(240)
    assert restarted.is_set(), "the broker did not come back"
    producer.close(120)  # raises DeliveryError if any message could not be delivered
    return producer.stats, down_for


def event_id(message: Any) -> str:
    return InteractionEvent.model_validate_json(message.value()).event_id


def topic_event_ids(conf: dict[str, Any], topic: str, expected: int, timeout_s: float = 60.0) -> list[str]:
    consumer = Consumer({**conf, "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    ids: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(ids) < expected and time.monotonic() < deadline:
            ids += [event_id(m) for m in consumer.consume(500, 0.5) if not m.error()]
        ids += [event_id(m) for m in consumer.consume(500, 2.0) if not m.error()]
    finally:
        consumer.close()
    return ids


def own_topics(broker: KafkaComponent, worker: Any) -> None:
    ensure_topics(
        broker.kafka,
        [
            TopicSpec(worker.topics["interactions"], PARTITIONS),
            TopicSpec(worker.topics["recommendations"], PARTITIONS),
            TopicSpec(worker.topics["dlq"], 1),
        ],
    )


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not get going in {timeout_s:.0f}s")


def assert_delivered_once(broker: KafkaComponent, topic: str, events: list[InteractionEvent], stats: Any) -> None:
    assert stats.delivered == len(events) and stats.failed == 0
    # The idempotent producer retried across the restart without writing any message twice.
    in_log = topic_event_ids(broker.kafka.client_config(), topic, len(events))
    assert sorted(in_log) == sorted(e.event_id for e in events)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_broker_restart_mid_stream_the_producer_and_worker_lose_and_double_nothing(
    own_kafka: KafkaComponent, worker_factory: Any, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker talks to this test's broker; Valkey/Feast stay the session's.
    monkeypatch.setenv("STREAMREC_KAFKA_LOCAL_PORT", str(own_kafka.kafka.local_port))
    worker = worker_factory(partitions=PARTITIONS, extra_env={"STREAMREC_BLOOM_BACKEND": "bitmap"})
    own_topics(own_kafka, worker)
    events = with_duplicates(make_events(f"kr{unique_id}", 3000, users=40, seed=5), every=100)
    worker.start()

    def consuming() -> None:
        def check() -> bool:
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker exited before the fault:\n{worker.tail()}")
            return worker.metric("streamrec_worker_events_in_total") >= 300

        wait_until(check, "the worker")

    stats, down_for = produce_through_restart(
        own_kafka, worker.topics["interactions"], events, restart_after=1000, rate=150.0, consuming=consuming
    )
    print(f"broker down for {down_for:.1f}s; {stats.delivered} delivered")
    assert_delivered_once(own_kafka, worker.topics["interactions"], events, stats)
    worker.wait_idle(partitions=PARTITIONS, timeout_s=150)
    assert_features_match(worker, events)  # every event counted once: none lost, no duplicate counted
    assert_bloom_complete(events, "bitmap")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_broker_restart_mid_stream_the_archiver_resumes_and_archives_every_event(
    own_kafka: KafkaComponent, unique_id: str, tmp_path: Path
) -> None:
    topic, dlq = f"test.kr.{unique_id}", f"test.krdlq.{unique_id}"
    ensure_topics(own_kafka.kafka, [TopicSpec(topic, PARTITIONS), TopicSpec(dlq, 1)])
    root = tmp_path / "archive"
    # Rolls by age only (3 s): when the broker stops, events are buffered and the next roll's commit falls in the
    # outage. The shortest session timeout allowed (6 s) is shorter than every outage seen (8-15 s), so the group
    # session always expires while that commit waits for the broker.
    env = archiver_env(
        root,
        topic,
        dlq,
        f"archiver-{unique_id}",
        STREAMREC_KAFKA_LOCAL_PORT=str(own_kafka.kafka.local_port),
        STREAMREC_CONSUMERS_ROLL_MAX_ROWS="100000",
        STREAMREC_CONSUMERS_ROLL_MAX_AGE_S="3",
        STREAMREC_CONSUMERS_SESSION_TIMEOUT_S="6",
    )
    events = with_duplicates(make_events(f"ka{unique_id}", 3000, users=40, seed=6), every=100)
    archiver = run_archiver(env)
    try:

        def consuming() -> None:
            def check() -> bool:
                if archiver.poll() is not None:
                    raise AssertionError("archiver exited before the fault")
                return bool(list(root.rglob("*.parquet")))

            wait_until(check, "the archiver")

        stats, down_for = produce_through_restart(
            own_kafka, topic, events, restart_after=1000, rate=150.0, consuming=consuming
        )
        print(f"broker down for {down_for:.1f}s; {stats.delivered} delivered")
        assert_delivered_once(own_kafka, topic, events, stats)
        unique = {e.event_id for e in events}
        deadline = time.monotonic() + 60
        archived_ids: set[str] = set()
        while time.monotonic() < deadline and archived_ids != unique and archiver.poll() is None:
            time.sleep(1.0)
            archived_ids = set(read_interactions(root, columns=["event_id"])["event_id"])
        exited = archiver.poll()
        assert exited is None, f"the archiver exited with {exited}; its output is printed below"
        assert len(archived_ids) == len(unique) and archived_ids == unique
    finally:
        if archiver.poll() is None:
            archiver.terminate()
        out, _ = archiver.communicate(timeout=30)
        # Its own lines and librdkafka's group events, without the reconnect attempts that fill the outage.
        lines = [line for line in out.decode(errors="replace").splitlines() if "Connect to ipv4" not in line]
        print("archiver output tail:\n" + "\n".join(line[:300] for line in lines[-25:]))
