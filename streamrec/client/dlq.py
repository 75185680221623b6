"""Dead-letter writing: one writer per rejected message, records that always fit, bounded metric labels.

**One writer.** Several consumer groups read the interactions topic (the worker, the archiver) and every one
of them validates each message the same way (:func:`streamrec.schemas.decode_message`), so each reject is
seen once per group. Only the group that owns the dead-letter topic writes to it: the worker
(:data:`DeadLetterRole.WRITER`). Every other consumer takes :data:`DeadLetterRole.OBSERVER`: it counts the
reject by reason and skips the message, writing nothing. Each rejected message therefore lands in the
dead-letter topic once.

**Never too large.** Records are built by :func:`streamrec.schemas.build_dead_letter` under a size limit
(default :data:`DEFAULT_MAX_RECORD_BYTES`, the producer's default ``message.max.bytes``); a larger original
is truncated and flagged, with its full size and SHA-256.

**Bounded labels.** Counts are kept per :class:`~streamrec.errors.RejectReason`, a closed set, never per
field or reason text (both carry sender data).
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from confluent_kafka import KafkaException, Producer

from streamrec.errors import InvalidEventError, RejectReason, StoreUnavailableError
from streamrec.schemas.dead_letter import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_KEY_BYTES,
    MIN_RECORD_BYTES,
    DeadLetter,
    DeadLetterRecord,
    build_dead_letter,
)
from streamrec.schemas.dead_letter import parse_dead_letter as _parse
from streamrec.settings import KafkaSettings

#: The component whose consumer group writes the dead letters of the interactions topic.
DLQ_OWNER = "streamrec-worker"
_FULL_QUEUE_RETRIES = 50


class DeadLetterRole(StrEnum):
    WRITER = "writer"  # builds and sends a record for every reject
    OBSERVER = "observer"  # counts rejects, sends nothing: another consumer group writes them


class DeadLetterWriter:
    """Turns rejects into bounded dead-letter records and counts them by reason.

    ``letter()`` is the pure part (for a caller with its own producer, such as the Faust worker):
    it counts the reject and returns the record to send, or None for an observer. ``publish()`` also
    sends it with the confluent-kafka ``producer`` given here.
    """

    def __init__(
        self,
        component: str,
        role: DeadLetterRole,
        *,
        topic: str | None = None,
        producer: Producer | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        if max_record_bytes < MIN_RECORD_BYTES:
            raise ValueError(f"max_record_bytes {max_record_bytes} is below the minimum {MIN_RECORD_BYTES}")
        self.component = component
        self.role = role
        self.topic = topic
        self.producer = producer
        self.max_record_bytes = max_record_bytes
        self.rejected: Counter[RejectReason] = Counter()  # every reject, whatever the role
        self.written = 0

    def letter(
        self,
        error: InvalidEventError,
        value: bytes | None,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
    ) -> DeadLetterRecord | None:
        self.rejected[error.code] += 1
        if self.role is DeadLetterRole.OBSERVER:
            return None
        return build_dead_letter(error, value, key, topic, partition, offset, self.component, self.max_record_bytes)

    def publish(
        self,
        error: InvalidEventError,
        value: bytes | None,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
    ) -> DeadLetterRecord | None:
        record = self.letter(error, value, key, topic, partition, offset)
        if record is None:
            return None
        if self.producer is None or self.topic is None:
            raise ValueError("a writing DeadLetterWriter needs a producer and a topic to publish")
        _produce(self.producer, self.topic, record)
        self.written += 1
        return record


def _produce(producer: Producer, topic: str, record: DeadLetterRecord) -> None:
    for _ in range(_FULL_QUEUE_RETRIES):
        try:
            producer.produce(topic, value=record.value, key=record.key)
        except BufferError:  # local queue full: let deliveries drain, then try again
            producer.poll(0.1)
            continue
        except KafkaException as exc:
            raise StoreUnavailableError(f"dead letter not queued: {exc}") from None
        producer.poll(0)
        return
    raise StoreUnavailableError("dead letter not queued: the producer queue stayed full")


class DeadLetterPublisher(DeadLetterWriter):
    """A writing :class:`DeadLetterWriter` for a confluent-kafka consumer, on the settings' DLQ topic."""

    def __init__(
        self,
        settings: KafkaSettings,
        producer: Producer,
        component: str,
        role: DeadLetterRole = DeadLetterRole.WRITER,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        super().__init__(
            component, role, topic=settings.dlq_topic, producer=producer, max_record_bytes=max_record_bytes
        )
        self.settings = settings


def dead_letter_bytes(
    error: InvalidEventError,
    value: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    rejected_by: str,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> bytes:
    """The record value only, for a caller that sends it keyed by the *original* key: the value is kept
    small enough for key + value to fit. Prefer :meth:`DeadLetterWriter.letter`, whose record key is
    bounded too."""
    # build_dead_letter counts a key of up to MAX_KEY_BYTES itself; a longer one is sent here anyway.
    long_key = len(key) if key is not None and len(key) > MAX_KEY_BYTES else 0
    budget = max(max_record_bytes - long_key, MIN_RECORD_BYTES)
    return build_dead_letter(error, value, key, topic, partition, offset, rejected_by, budget).value


def parse_dead_letter(raw: bytes) -> DeadLetter:
    """Any supported version of the record; see :func:`streamrec.schemas.parse_dead_letter`."""
    return _parse(raw)
