"""The SDK against the real broker: complete delivery with per-key order, and the DLQ path."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer

from streamrec.client import InteractionProducer
from streamrec.client.dlq import parse_dead_letter
from streamrec.client.validating import InteractionConsumer
from streamrec.schemas import InteractionEvent, decode_interaction
from tests.conftest import StackHandle


def _drain(settings: dict, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    consumer = Consumer({**settings, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None:
                    out.append(msg)
    finally:
        consumer.close()
    return out


def test_thousand_events_come_back_complete_with_per_key_order(stack: StackHandle, unique_topics) -> None:
    topic = unique_topics("sdk")
    users = [f"u{n}" for n in range(37)]
    sent: dict[str, list[str]] = defaultdict(list)
    base_ms = 1_764_000_000_000
    with InteractionProducer(stack.kafka, topic=topic) as producer:
        for n in range(1000):
            event = InteractionEvent.new(users[n % len(users)], f"i{n}", "view", timestamp=base_ms + n)
            producer.send(event)
            sent[event.user_id].append(event.event_id)
    assert producer.stats.delivered == 1000 and producer.stats.failed == 0

    messages = _drain(stack.kafka.client_config(), topic, 1000)
    received: dict[str, list[str]] = defaultdict(list)
    partitions_of_user: dict[str, set[int]] = defaultdict(set)
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        event = decode_interaction(msg.value())
        assert msg.key() == event.user_id.encode()
        received[event.user_id].append(event.event_id)
        partitions_of_user[event.user_id].add(msg.partition())
    assert sum(len(v) for v in received.values()) == 1000
    assert received == sent, "every event once, and each user's events in the order sent"
    assert all(len(p) == 1 for p in partitions_of_user.values()), "a user's events share one partition"


def test_malformed_messages_land_in_the_dlq_with_reason_and_position(stack: StackHandle, unique_topics) -> None:
    topic = unique_topics("dlq-src", partitions=1)
    dlq = unique_topics("dlq", partitions=1)
    settings = stack.kafka.model_copy(update={"dlq_topic": dlq})
    good = InteractionEvent.new("u1", "i1", "click")
    bad_payloads = [b"{oops", json.dumps({**json.loads(good.to_json_bytes()), "event_type": "watch"}).encode()]
    with InteractionProducer(settings, topic=topic) as producer:
        producer.send(good)
        for raw in bad_payloads:
            producer.send_raw(b"u1", raw)
        producer.send_raw(b"not-u1", good.to_json_bytes())  # key does not match user_id

    consumer = InteractionConsumer(settings, f"g-{uuid.uuid4().hex}", component="test", topic=topic)
    valid = []
    deadline = time.monotonic() + 30
    while consumer.stats.valid + consumer.stats.invalid < 4 and time.monotonic() < deadline:
        valid += consumer.poll_batch(100, 0.5)
    consumer.commit()
    consumer.close()
    assert [v.event.event_id for v in valid] == [good.event_id]
    assert consumer.stats.invalid == 3

    letters = [parse_dead_letter(m.value()) for m in _drain(settings.client_config(), dlq, 3)]
    assert [letter.field for letter in letters] == ["<payload>", "event_type", "<key>"]
    assert "not valid JSON" in letters[0].reason and "'view'" in letters[1].reason
    assert base64.b64decode(letters[0].original_value_b64) == bad_payloads[0]
    assert [(lt.source_topic, lt.source_partition, lt.source_offset) for lt in letters] == [
        (topic, 0, 1),
        (topic, 0, 2),
        (topic, 0, 3),
    ]
