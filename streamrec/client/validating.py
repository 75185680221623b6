"""A confluent-kafka consumer of interaction events that validates every message.

Valid events are handed to the caller. Invalid ones are counted by reason; the one consumer group that owns
the dead-letter topic (:data:`streamrec.client.dlq.DLQ_OWNER`, the worker) writes their dead letters; every
other group (the archiver) calls :meth:`InteractionConsumer.observe_dead_letters` and only counts and skips
them, so each reject lands in the DLQ once. The clock-skew policy takes the record's broker append time as
"now" where the topic stamps one, so every group decides alike. Offsets are committed only when the caller
says its work is durable (:meth:`commit`), so delivery is at-least-once and callers make their writes
idempotent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streamrec.client.consumer import consumer_config
from streamrec.client.dlq import DeadLetterPublisher, DeadLetterRole
from streamrec.client.producer import producer_config
from streamrec.errors import InvalidEventError, RejectReason, StoreUnavailableError
from streamrec.retry import Backoff, retry_sync
from streamrec.schemas.codec import check_key_matches, decode_interaction, skew_reference
from streamrec.schemas.events import InteractionEvent
from streamrec.settings import KafkaSettings

#: Commits wait this long at most (about a minute) for a group coordinator that moved or restarted.
COMMIT_BACKOFF = Backoff(initial_s=0.2, max_s=5.0, attempts=16)
_COORDINATOR_MOVING = {
    KafkaError._WAIT_COORD,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError._TRANSPORT,
    KafkaError.REQUEST_TIMED_OUT,
}


#: Commit failures meaning this member is no longer in the group (its session timed out while the broker was
#: away, or a rebalance moved on): its offsets cannot be committed, and need not be: the partitions' next
#: owner (this consumer too, once its next poll rejoined) reads them again from the last commit. At-least-once:
#: what was written is written again, and every writer downstream is idempotent.
_MEMBERSHIP_LOST = {
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._ASSIGNMENT_LOST,
}


def _kafka_code(exc: BaseException) -> int | None:
    if not isinstance(exc, KafkaException) or not exc.args or not isinstance(exc.args[0], KafkaError):
        return None
    return int(exc.args[0].code())


def _membership_lost(exc: BaseException) -> bool:
    return _kafka_code(exc) in _MEMBERSHIP_LOST


def _coordinator_moving(exc: BaseException) -> bool:
    """Commit failures that end by themselves once the broker and group settle (not a fenced member)."""
    return _kafka_code(exc) in _COORDINATOR_MOVING


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumedEvent:
    event: InteractionEvent
    partition: int
    offset: int


@dataclass
class BatchStats:
    valid: int = 0
    invalid: int = 0


class InteractionConsumer:
    """Polls batches of validated interaction events from one topic."""

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        component: str,
        topic: str | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings
        #: The clock-skew policy's limit (seconds; None: none): the core setting the API and the worker read too.
        self.max_future_skew_s: float | None = settings.max_future_skew_s
        self.topic = topic or settings.interactions_topic
        conf = consumer_config(
            settings, group_id, **{"enable.auto.commit": False, "auto.offset.reset": "earliest", **overrides}
        )
        self._consumer = Consumer(conf)
        self._producer = Producer(producer_config(settings))
        self._dlq = DeadLetterPublisher(settings, self._producer, component)
        self._pending: dict[int, int] = {}
        self.stats = BatchStats()
        self._consumer.subscribe([self.topic], on_revoke=self._on_revoke)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Offsets of partitions we no longer own cannot be committed; their new owner re-reads them
        # (at-least-once), which is why every writer downstream is idempotent.
        for tp in partitions:
            self._pending.pop(tp.partition, None)

    def poll_batch(self, max_messages: int = 1000, timeout: float = 0.5) -> list[ConsumedEvent]:
        messages: list[Message] = self._consumer.consume(max_messages, timeout)
        out: list[ConsumedEvent] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise StoreUnavailableError(f"consumer failed: {err}")
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            # Data messages always carry these; the stubs type them optional for error messages.
            partition, offset, topic = int(msg.partition() or 0), int(msg.offset() or 0), str(msg.topic())
            self._pending[partition] = max(self._pending.get(partition, -1), offset)
            value, key = msg.value(), msg.key()
            ts_type, ts_ms = msg.timestamp()
            try:
                event = decode_interaction(
                    value or b"",
                    self.settings.max_event_bytes,
                    max_future_skew=self.max_future_skew_s,
                    now=skew_reference(ts_ms, ts_type == TIMESTAMP_LOG_APPEND_TIME),
                )
                check_key_matches(event, key)
            except InvalidEventError as exc:
                self.stats.invalid += 1
                self._dlq.publish(exc, value, key, topic, partition, offset)
                continue
            self.stats.valid += 1
            out.append(ConsumedEvent(event, partition, offset))
        return out

    def observe_dead_letters(self) -> None:
        """Count rejects and skip them without writing dead letters: for every consumer group but the one
        that owns the dead-letter topic (:data:`streamrec.client.dlq.DLQ_OWNER`)."""
        self._dlq.role = DeadLetterRole.OBSERVER

    @property
    def rejected(self) -> Counter[RejectReason]:
        """Rejects so far by reason code, whatever the dead-letter role (a bounded metric label)."""
        return self._dlq.rejected

    def __iter__(self) -> Iterator[ConsumedEvent]:
        while True:
            yield from self.poll_batch()

    def commit(self) -> None:
        """Commit everything polled so far; call only after its effects are durable (DLQ flushed too)."""
        if not self._pending:
            return
        remaining = self._producer.flush(30)
        if remaining:
            raise StoreUnavailableError(f"{remaining} dead letters undelivered; offsets not committed")
        offsets = [TopicPartition(self.topic, p, o + 1) for p, o in self._pending.items()]
        # A broker restart leaves the group without a coordinator for a while: wait for it rather than exit.
        try:
            retry_sync(
                lambda: self._consumer.commit(offsets=offsets, asynchronous=False),
                COMMIT_BACKOFF,
                retry_if=_coordinator_moving,
            )
        except KafkaException as exc:
            if not _membership_lost(exc):
                raise
            log.warning("offsets not committed (%s): read again once this consumer rejoined its group", exc)
        self._pending.clear()

    def close(self) -> None:
        self._producer.flush(10)
        self._consumer.close()
