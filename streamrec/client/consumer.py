"""Consumer SDK for the recommendations topic (and a generic JSON-lines follower)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message

from streamrec.errors import InvalidEventError, StoreUnavailableError
from streamrec.schemas.codec import decode_recommendation
from streamrec.schemas.events import RecommendationMessage
from streamrec.settings import KafkaSettings


def consumer_config(settings: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    conf = settings.client_config()
    conf.update(
        {
            "group.id": group_id,
            "auto.offset.reset": "latest",
            "enable.auto.commit": True,
            "enable.partition.eof": False,
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    conf.update(overrides)
    return conf


class RecommendationConsumer:
    """Iterates :class:`RecommendationMessage` objects from the recommendations topic.

    ``user_ids`` filters client-side (the topic is keyed by user id, so a client app usually reads the
    partitions of its own users; a filter is simplest for demos and tools). Malformed messages are
    skipped and counted in :attr:`malformed`, never raised into the caller's loop.
    """

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        group_id: str | None = None,
        from_beginning: bool = False,
        user_ids: set[str] | None = None,
        topic: str | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings or KafkaSettings.load()
        self.topic = topic or self.settings.recommendations_topic
        self.user_ids = user_ids
        self.malformed = 0
        group = group_id or f"streamrec-recs-{uuid.uuid4().hex[:8]}"
        if from_beginning:
            overrides.setdefault("auto.offset.reset", "earliest")
        self._consumer = Consumer(consumer_config(self.settings, group, **overrides))
        self._consumer.subscribe([self.topic])

    def poll(self, timeout: float = 1.0) -> RecommendationMessage | None:
        msg: Message | None = self._consumer.poll(timeout)
        if msg is None:
            return None
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return None
            if err.fatal():
                raise StoreUnavailableError(f"consumer failed: {err}")
            return None
        try:
            rec = decode_recommendation(msg.value() or b"")
        except InvalidEventError:
            self.malformed += 1
            return None
        if self.user_ids is not None and rec.user_id not in self.user_ids:
            return None
        return rec

    def wait_for_assignment(self, timeout_s: float = 10.0) -> bool:
        """Poll until partitions are assigned, so that "latest" starts before anything produced next."""
        deadline = time.monotonic() + timeout_s
        while not self._consumer.assignment() and time.monotonic() < deadline:
            self.poll(0.2)
        return bool(self._consumer.assignment())

    def __iter__(self) -> Iterator[RecommendationMessage]:
        while True:
            rec = self.poll(1.0)
            if rec is not None:
                yield rec

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> RecommendationConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
