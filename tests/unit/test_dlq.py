"""Dead letters: bounded records whatever the original's size, one writer per reject, bounded labels."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from streamrec.client.dlq import DeadLetterPublisher, DeadLetterRole, DeadLetterWriter, dead_letter_bytes
from streamrec.errors import InvalidEventError, RejectReason, StoreUnavailableError
from streamrec.schemas import build_dead_letter, decode_interaction, parse_dead_letter
from streamrec.schemas.dead_letter import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_KEY_BYTES,
    MIN_RECORD_BYTES,
    RECORD_OVERHEAD_BYTES,
)
from streamrec.settings import KafkaSettings


def rejection(raw: bytes, max_bytes: int = 16_384) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as info:
        decode_interaction(raw, max_bytes)
    return info.value


class FakeProducer:
    """Records what is produced and refuses, like librdkafka, a message over its message.max.bytes."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_RECORD_BYTES, full_for: int = 0) -> None:
        self.max_bytes = max_bytes
        self.full_for = full_for
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if self.full_for > 0:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        if len(value) + len(key or b"") > self.max_bytes:
            raise AssertionError("MessageSizeTooLargeError: the record exceeds message.max.bytes")
        self.sent.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def test_a_small_original_is_kept_whole_with_its_size_hash_and_code() -> None:
    raw = b"\xff broken"
    record = build_dead_letter(rejection(raw), raw, b"user-1", "interactions", 3, 17, "streamrec-worker")
    letter = parse_dead_letter(record.value)
    assert letter.original_value() == raw and not letter.truncated
    assert letter.original_value_bytes == len(raw)
    assert letter.original_value_sha256 == hashlib.sha256(raw).hexdigest()
    assert letter.field == "<payload>" and "UTF-8" in letter.reason and letter.reason_code is RejectReason.NOT_UTF8
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("interactions", 3, 17)
    assert record.key == b"user-1" and letter.original_key_bytes == 6
    assert letter.schema_version == 2


@pytest.mark.parametrize("size", [750_001, 900_000, 999_999, 5_000_000])
def test_an_original_too_large_for_the_broker_is_truncated_and_the_record_fits(size: int) -> None:
    raw = (b'{"pad": "' + b"x" * size)[:size]
    error = rejection(raw)
    assert error.code is RejectReason.TOO_LARGE
    record = build_dead_letter(error, raw, b"user-1", "interactions", 0, 5, "streamrec-worker")
    assert record.size <= DEFAULT_MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES
    letter = parse_dead_letter(record.value)
    assert letter.truncated
    assert letter.original_value_bytes == size
    assert letter.original_value_sha256 == hashlib.sha256(raw).hexdigest()
    kept = letter.original_value()
    assert raw.startswith(kept) and len(kept) > DEFAULT_MAX_RECORD_BYTES * 0.7  # as much as fits, not a stub


def test_the_original_is_whole_exactly_while_it_fits() -> None:
    limit = 20_000
    sizes = range(12_000, 16_000, 7)
    flags = []
    for size in sizes:
        raw = b"y" * size
        record = build_dead_letter(rejection(raw, max_bytes=100), raw, None, "t", 0, 0, "w", limit)
        assert record.size <= limit - RECORD_OVERHEAD_BYTES
        flags.append(parse_dead_letter(record.value).truncated)
    assert flags.index(True) > 0 and all(flags[flags.index(True) :])  # whole, then truncated from one size on


def test_a_huge_key_is_cut_in_the_record_and_dropped_as_the_dlq_key() -> None:
    key = b"k" * 600_000
    raw = b"z" * 600_000
    record = build_dead_letter(rejection(raw), raw, key, "interactions", 0, 1, "w")
    assert record.key is None and record.size <= DEFAULT_MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES
    letter = parse_dead_letter(record.value)
    assert letter.truncated and letter.original_key_bytes == len(key)
    assert base64.b64decode(letter.original_key_b64 or "") == key[:MAX_KEY_BYTES]


def test_dead_letter_bytes_keeps_room_for_the_original_key_it_is_sent_with() -> None:
    key = b"k" * 300_000
    raw = b"z" * 900_000
    value = dead_letter_bytes(rejection(raw), raw, key, "interactions", 0, 1, "w")
    assert len(value) + len(key) <= DEFAULT_MAX_RECORD_BYTES


def test_a_limit_below_the_minimum_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="minimum"):
        DeadLetterWriter("w", DeadLetterRole.WRITER, max_record_bytes=MIN_RECORD_BYTES - 1)


def test_the_writer_publishes_a_900_kb_reject_without_exceeding_the_producer_limit() -> None:
    producer = FakeProducer()
    writer = DeadLetterPublisher(KafkaSettings(), producer, "streamrec-worker")  # type: ignore[arg-type]
    raw = b"{" + b" " * 900_000
    writer.publish(rejection(raw), raw, b"user-9", "interactions", 2, 40)
    [(topic, key, value)] = producer.sent
    assert topic == "interactions.dlq" and key == b"user-9"
    assert parse_dead_letter(value).truncated


def test_a_full_producer_queue_is_drained_and_retried() -> None:
    producer = FakeProducer(full_for=3)
    writer = DeadLetterWriter("w", DeadLetterRole.WRITER, topic="dlq", producer=producer)  # type: ignore[arg-type]
    writer.publish(rejection(b"{x"), b"{x", b"u", "interactions", 0, 0)
    assert len(producer.sent) == 1 and producer.polls >= 3


def test_a_queue_that_stays_full_raises_a_typed_error() -> None:
    producer = FakeProducer(full_for=10**6)
    writer = DeadLetterWriter("w", DeadLetterRole.WRITER, topic="dlq", producer=producer)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailableError, match="queue stayed full"):
        writer.publish(rejection(b"{x"), b"{x", b"u", "interactions", 0, 0)


def test_only_the_writer_role_sends_the_observer_counts_and_skips() -> None:
    producer = FakeProducer()
    worker = DeadLetterWriter("streamrec-worker", DeadLetterRole.WRITER, topic="dlq", producer=producer)  # type: ignore[arg-type]
    archiver = DeadLetterWriter("streamrec-archiver", DeadLetterRole.OBSERVER)
    rejects = [b"{oops", b"", b'{"event_id": 1}']
    for offset, raw in enumerate(rejects):
        for consumer in (worker, archiver):  # both consumer groups read every message
            consumer.publish(rejection(raw), raw, b"u", "interactions", 0, offset)
    assert [json.loads(v)["rejected_by"] for _, _, v in producer.sent] == ["streamrec-worker"] * 3
    assert sorted(json.loads(v)["source_offset"] for _, _, v in producer.sent) == [0, 1, 2]  # each reject once
    assert archiver.rejected == worker.rejected
    assert archiver.written == 0 and worker.written == 3


def test_reject_counts_are_keyed_by_the_closed_reason_set_never_by_sender_data() -> None:
    writer = DeadLetterWriter("w", DeadLetterRole.OBSERVER)
    base = json.loads(b'{"event_id": "6f1c2f1e-8d2a-4a4e-9a51-0f5d3c7b9e10"}')
    for n in range(50):  # fifty different sender-chosen field names
        raw = json.dumps({**base, f"field_{n}": n}).encode()
        writer.letter(rejection(raw), raw, b"u", "interactions", 0, n)
    assert set(writer.rejected) <= set(RejectReason)
    assert len(writer.rejected) == 1


def test_version_1_records_are_still_readable() -> None:
    raw = b"{broken"
    v1: dict[str, Any] = {
        "reason": "<payload>: not valid JSON: EOF",
        "field": "<payload>",
        "original_value_b64": base64.b64encode(raw).decode(),
        "original_key_b64": base64.b64encode(b"u1").decode(),
        "source_topic": "interactions",
        "source_partition": 1,
        "source_offset": 9,
        "rejected_at": "2026-11-28T09:15:31.002Z",
        "rejected_by": "streamrec-archiver",
        "schema_version": 1,
    }
    letter = parse_dead_letter(json.dumps(v1).encode())
    assert letter.original_value() == raw and not letter.truncated and letter.reason_code is None
    assert letter.original_value_sha256 == hashlib.sha256(raw).hexdigest() and letter.original_key_bytes == 2
    with pytest.raises(InvalidEventError):
        parse_dead_letter(json.dumps({**v1, "schema_version": 3}).encode())
