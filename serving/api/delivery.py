"""Kafka writes the API answers for only once the broker acknowledged them.

One librdkafka producer per API process; its delivery reports are served by :meth:`KafkaDelivery.poll` on a
thread and resolve asyncio futures through the event loop, so a request awaits its acknowledgement without
blocking the loop. A full local queue is refused at once (:class:`QueueFull`, answered 503 with Retry-After),
never waited for on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from streamrec.settings import KafkaSettings


@dataclass(frozen=True)
class Record:
    """One message: ``value=None`` is a tombstone (a delete on a compacted topic)."""

    topic: str
    key: bytes
    value: bytes | None
    timestamp_ms: int = 0


class DeliveryFailed(Exception):
    """The broker did not acknowledge a write; ``reason`` is librdkafka's (or the timeout)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class QueueFull(Exception):
    """The producer's local queue is full: the caller should retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"producer queue full; retry after {retry_after_s} s")


class KafkaDelivery:
    """``await deliver(records)`` returns once every record is acknowledged, else raises
    :class:`DeliveryFailed` (first failure) or :class:`QueueFull`. ``producer`` is any object with
    confluent-kafka's ``produce``/``poll``/``flush`` (tests pass the real one with their own config)."""

    def __init__(self, producer: Any, timeout_s: float, retry_after_s: int = 1) -> None:
        self._producer = producer
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls, kafka: KafkaSettings, timeout_s: float, retry_after_s: int = 1, **overrides: Any
    ) -> KafkaDelivery:
        from confluent_kafka import Producer

        from streamrec.client.producer import producer_config

        config = {"delivery.timeout.ms": int(timeout_s * 1000), **overrides}
        return cls(Producer(producer_config(kafka, **config)), timeout_s, retry_after_s)

    def _start(self) -> None:
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll_forever, name="api-kafka-delivery", daemon=True)
            self._poller.start()

    def _poll_forever(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def deliver(self, records: Sequence[Record]) -> None:
        loop = asyncio.get_running_loop()
        self._start()
        futures: list[asyncio.Future[None]] = []
        for record in records:
            future: asyncio.Future[None] = loop.create_future()
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    timestamp=record.timestamp_ms,
                    on_delivery=partial(_resolve, loop, future),
                )
            except BufferError:
                raise QueueFull(self.retry_after_s) from None
            except Exception as exc:  # KafkaException for a message over the size limit, an unknown topic...
                raise DeliveryFailed(str(exc)) from None
            futures.append(future)
        try:
            outcomes = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), self.timeout_s + 1.0)
        except TimeoutError:
            raise DeliveryFailed(f"not acknowledged within {self.timeout_s:g} s") from None
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=1.0)
        if self._producer.flush(timeout_s):
            # Undeliverable within the bound (broker gone): drop them, so the client does not go on reconnecting.
            self._producer.purge()
            self._producer.flush(0)
        self._producer.close()


def _resolve(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], err: KafkaError | None, msg: Message
) -> None:
    """Delivery callback (on the polling thread): hand the outcome to the event loop."""
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, None if err is None else str(err))


def _settle(future: asyncio.Future[None], error: str | None) -> None:
    if future.done():  # the request gave up (timeout, client gone)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryFailed(error))
