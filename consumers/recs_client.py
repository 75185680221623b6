"""Example client application: keep every user's latest recommendations from the recommendations topic.

A client app (a web front end, a push-notification service) reads the topic with the SDK's
:class:`~streamrec.client.RecommendationConsumer` and keeps the newest message per user; a message older
than the one held (messages of one user arrive in order on one partition, but a consumer restart re-reads)
never replaces a newer one. ``streamrec recs-client`` runs it and prints each change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streamrec.client import RecommendationConsumer
from streamrec.logging import librdkafka_logger
from streamrec.schemas.events import RecommendationMessage


@dataclass
class LatestRecommendations:
    """user id -> newest recommendation message (by ``generated_at``)."""

    by_user: dict[str, RecommendationMessage] = field(default_factory=dict)

    def offer(self, message: RecommendationMessage) -> bool:
        """Keep ``message`` if it is newer than what the user has; True when kept."""
        held = self.by_user.get(message.user_id)
        if held is not None and held.generated_at >= message.generated_at:
            return False
        self.by_user[message.user_id] = message
        return True

    def items(self, user_id: str) -> list[str]:
        held = self.by_user.get(user_id)
        return [item.item_id for item in held.items] if held is not None else []


def describe(message: RecommendationMessage, now: datetime | None = None) -> str:
    age_ms = ((now or datetime.now(UTC)) - message.generated_at).total_seconds() * 1000
    top = ", ".join(item.item_id for item in message.items[:5])
    flags = f" [{', '.join(message.flags)}]" if message.flags else ""
    more = " ..." if len(message.items) > 5 else ""
    return f"{message.user_id}: {top}{more} ({message.model_version}{flags}, {age_ms:.0f} ms old)"


def follow(
    consumer: RecommendationConsumer,
    cache: LatestRecommendations,
    on_change: Callable[[RecommendationMessage], None],
    should_stop: Callable[[], bool],
) -> None:
    while not should_stop():
        message = consumer.poll(0.5)
        if message is not None and cache.offer(message):
            on_change(message)


def run(users: Iterable[str] | None, from_beginning: bool, group: str | None, idle_exit_s: float | None) -> int:
    import time

    cache = LatestRecommendations()
    last = time.monotonic()

    def on_change(message: RecommendationMessage) -> None:
        nonlocal last
        last = time.monotonic()
        print(describe(message), flush=True)

    def should_stop() -> bool:
        return idle_exit_s is not None and time.monotonic() - last > idle_exit_s

    with RecommendationConsumer(
        group_id=group,
        from_beginning=from_beginning,
        user_ids=set(users) if users else None,
        logger=librdkafka_logger("recs-client"),  # librdkafka's own lines through Python logging
    ) as consumer:
        follow(consumer, cache, on_change, should_stop)
    return 0
