"""The validating confluent-kafka consumer, on canned messages: dead-letter roles and the skew reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME

from streamrec.client.dlq import DeadLetterRole, parse_dead_letter
from streamrec.client.validating import InteractionConsumer
from streamrec.errors import RejectReason
from streamrec.schemas.events import InteractionEvent
from streamrec.settings import KafkaSettings

APPEND = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)


class Msg:
    def __init__(self, offset: int, key: bytes | None, value: bytes, ts_type: int = TIMESTAMP_LOG_APPEND_TIME) -> None:
        self._offset, self._key, self._value, self._ts_type = offset, key, value, ts_type

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return "interactions"

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return self._ts_type, int(APPEND.timestamp() * 1000)


class Canned:
    def __init__(self, messages: list[Msg]) -> None:
        self.messages = messages
        self.produced: list[tuple[bytes | None, bytes]] = []

    def consume(self, n: int, timeout: float) -> list[Msg]:
        out, self.messages = self.messages, []
        return out

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.produced.append((key, value))

    def poll(self, timeout: float) -> int:
        return 0


def consumer(messages: list[Msg], role: DeadLetterRole) -> tuple[InteractionConsumer, Canned]:
    c = InteractionConsumer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "g", "test")
    if role is DeadLetterRole.OBSERVER:
        c.observe_dead_letters()
    canned = Canned(messages)
    c._consumer.close()
    c._consumer, c._producer = canned, canned  # type: ignore[assignment]
    c._dlq.producer = canned  # type: ignore[assignment]
    return c, canned


def batch() -> list[Msg]:
    ahead = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND + timedelta(minutes=10))
    fine = InteractionEvent.new("u1", "i2", "view", timestamp=APPEND)
    return [
        Msg(0, b"u1", ahead.to_json_bytes()),
        Msg(1, None, fine.to_json_bytes()),
        Msg(2, b"u1", fine.to_json_bytes()),
    ]


def test_an_observer_counts_rejects_by_reason_and_writes_no_dead_letter() -> None:
    c, canned = consumer(batch(), DeadLetterRole.OBSERVER)
    valid = c.poll_batch()
    assert [v.offset for v in valid] == [2]
    assert c.rejected == {RejectReason.FUTURE_TIMESTAMP: 1, RejectReason.KEY_MISSING: 1}
    assert canned.produced == []


def test_the_writer_decides_like_the_worker_against_the_broker_append_time() -> None:
    c, canned = consumer(batch(), DeadLetterRole.WRITER)
    c.poll_batch()
    assert [parse_dead_letter(v).reason_code for _, v in canned.produced] == ["future_timestamp", "key_missing"]


def test_a_create_time_is_not_trusted_as_now() -> None:
    # Stamped by the producer: the skew policy falls back to this machine's clock, where 2021 is the past.
    ahead = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND + timedelta(minutes=10))
    c, _ = consumer([Msg(0, b"u1", ahead.to_json_bytes(), TIMESTAMP_CREATE_TIME)], DeadLetterRole.OBSERVER)
    assert [v.offset for v in c.poll_batch()] == [0]
