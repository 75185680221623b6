"""Producer SDK: interaction events to Kafka, keyed by user id, idempotent, acks=all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Self

from confluent_kafka import KafkaError, Message, Producer

from streamrec.errors import DeliveryError
from streamrec.retry import Backoff, retry_sync
from streamrec.schemas.events import InteractionEvent
from streamrec.settings import KafkaSettings

DeliveryCallback = Callable[[KafkaError | None, Message], None]

#: A full local queue is retried every 50 ms (serving delivery reports meanwhile) until there is room.
QUEUE_FULL_BACKOFF = Backoff(initial_s=0.05, max_s=0.05)


def _queue_full(exc: BaseException) -> bool:
    return isinstance(exc, BufferError)


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings: idempotent, acks=all, batched and compressed; Java-compatible partitioning."""
    conf = settings.client_config()
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_bytes,
            "compression.type": settings.compression,
            "delivery.timeout.ms": settings.delivery_timeout_ms,
            # murmur2 like the Java client and aiokafka: every producer puts a user on the same partition.
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 512 * 1024,
        }
    )
    conf.update(overrides)
    return conf


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, err: KafkaError | None) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                if len(self.errors) < 10:
                    self.errors.append(str(err))


class DeliveringProducer:
    """What every SDK producer shares: delivery stats, flushing that raises on failure, a context manager.

    Subclasses set ``_producer`` and ``stats``; ``noun`` names what they send in errors.
    """

    _producer: Producer
    stats: DeliveryStats
    noun = "messages"

    def poll(self, timeout: float = 0.0) -> int:
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        remaining = self._producer.flush(timeout)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining:
            raise DeliveryError(f"{remaining} {self.noun} still undelivered after {timeout:.0f}s")
        if self.stats.failed:
            raise DeliveryError(
                f"{self.stats.failed} {self.noun} failed to deliver; first errors: {'; '.join(self.stats.errors)}"
            )

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._producer.flush(5.0)


class InteractionProducer(DeliveringProducer):
    """Sends :class:`InteractionEvent` objects to the interactions topic.

    Messages are batched by librdkafka; :meth:`flush` (also called by :meth:`close` and the context
    manager) waits for every delivery report and raises :class:`DeliveryError` if any failed.
    """

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        topic: str | None = None,
        on_delivery: DeliveryCallback | None = None,
        **config_overrides: Any,
    ) -> None:
        self.settings = settings or KafkaSettings.load()
        self.topic = topic or self.settings.interactions_topic
        self.stats = DeliveryStats()
        self._user_callback = on_delivery
        self._producer = Producer(producer_config(self.settings, **config_overrides))

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self.stats.record(err)
        if self._user_callback is not None:
            self._user_callback(err, msg)

    def send(self, event: InteractionEvent, timestamp_ms: int | None = None) -> None:
        self.send_raw(event.user_id.encode(), event.to_json_bytes(), timestamp_ms or event.epoch_ms)

    def send_raw(self, key: bytes | None, value: bytes, timestamp_ms: int | None = None) -> None:
        """Send pre-encoded bytes (no validation: use for tests of the DLQ path or pre-validated data)."""
        retry_sync(
            partial(
                self._producer.produce,
                self.topic,
                value=value,
                key=key,
                on_delivery=self._on_delivery,
                timestamp=timestamp_ms or 0,
            ),
            QUEUE_FULL_BACKOFF,
            retry_if=_queue_full,
            # Local queue full: serve delivery reports while waiting, to make room.
            sleep=self._producer.poll,
        )
        self._producer.poll(0)

    def send_many(self, events: Iterable[InteractionEvent]) -> int:
        count = 0
        for event in events:
            self.send(event)
            count += 1
        return count
