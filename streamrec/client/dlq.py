"""Dead-letter publishing: the original bytes, the reason and where the message came from."""

from __future__ import annotations

from confluent_kafka import Producer

from streamrec.errors import InvalidEventError
from streamrec.schemas.codec import dead_letter
from streamrec.schemas.events import DeadLetter
from streamrec.settings import KafkaSettings


def dead_letter_bytes(
    error: InvalidEventError,
    value: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    rejected_by: str,
) -> bytes:
    return dead_letter(error, value, key, topic, partition, offset, rejected_by).model_dump_json().encode()


class DeadLetterPublisher:
    """Synchronous-enough DLQ writer for confluent-kafka consumers (the Faust worker uses its own producer)."""

    def __init__(self, settings: KafkaSettings, producer: Producer, component: str) -> None:
        self.settings = settings
        self.producer = producer
        self.component = component

    def publish(
        self,
        error: InvalidEventError,
        value: bytes | None,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        payload = dead_letter_bytes(error, value, key, topic, partition, offset, self.component)
        self.producer.produce(self.settings.dlq_topic, value=payload, key=key)
        self.producer.poll(0)


def parse_dead_letter(raw: bytes) -> DeadLetter:
    return DeadLetter.model_validate_json(raw)
