"""The live stream behind ``/v1/recommendations/stream``: ONE Kafka consumer per API process, fanned out by user.

The first subscriber starts a consumer task on the recommendations topic (a consumer group of its own, so every
API process sees every partition); each subscriber gets a small bounded queue, and a slow reader loses its oldest
lists, never the newest and never another reader's. The consumer closes ``idle_close_s`` after the last
subscriber left, so nothing is left open behind closed pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from streamrec.schemas.events import RecommendationMessage

if TYPE_CHECKING:
    from streamrec.settings import KafkaSettings

CONNECTING = "connecting"
OK = "ok"
IDLE = "idle"


class RecommendationFeed(Protocol):
    """A blocking source of recommendation messages (run in a worker thread)."""

    def poll(self, timeout_s: float) -> RecommendationMessage | None: ...

    def assigned(self) -> bool: ...

    def last_error(self) -> str | None: ...

    def close(self) -> None: ...


FeedFactory = Callable[[], RecommendationFeed]


class KafkaRecommendationFeed:
    """The recommendations topic through :class:`streamrec.client.consumer.RecommendationConsumer`: a group of its
    own (starting at the end of the topic, committing nothing), librdkafka's errors kept for the status line."""

    def __init__(self, kafka: KafkaSettings, group_id: str) -> None:
        from streamrec.client.consumer import RecommendationConsumer

        self._error: str | None = None
        self.group_id = group_id
        overrides: dict[str, Any] = {"enable.auto.commit": False, "error_cb": self._on_error}
        self._consumer = RecommendationConsumer(kafka, group_id=group_id, **overrides)

    def _on_error(self, error: Any) -> None:
        self._error = str(error.str()) if hasattr(error, "str") else str(error)

    def poll(self, timeout_s: float) -> RecommendationMessage | None:
        return self._consumer.poll(timeout_s)

    def assigned(self) -> bool:
        return self._consumer.wait_for_assignment(timeout_s=0)

    def last_error(self) -> str | None:
        return self._error

    def close(self) -> None:
        self._consumer.close()


def kafka_feed_factory(kafka: KafkaSettings, group_prefix: str) -> FeedFactory:
    """A fresh group name per consumer (<prefix>-<host>-<pid>-<n>): two API processes, or a consumer closing
    while the next one starts, never split the topic's partitions between them."""
    counter = itertools.count(1)
    base = f"{group_prefix}-{socket.gethostname()}-{os.getpid()}"
    return lambda: KafkaRecommendationFeed(kafka, f"{base}-{next(counter)}")


@dataclass(frozen=True)
class LiveUpdate:
    kind: str  # "recommendations" or "status"
    data: dict[str, Any]


@dataclass(eq=False)  # identity: one subscriber is one entry in the fan-out sets
class Subscription:
    user_id: str
    buffer: int
    queue: asyncio.Queue[LiveUpdate] = field(default_factory=asyncio.Queue)
    dropped: int = 0

    def offer(self, update: LiveUpdate) -> None:
        if self.queue.qsize() >= self.buffer:
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(update)


class HubFull(Exception):
    pass


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


class RecommendationHub:
    def __init__(
        self,
        feed_factory: FeedFactory,
        max_subscribers: int = 200,
        buffer: int = 4,
        idle_close_s: float = 10.0,
        assignment_timeout_s: float = 15.0,
        poll_s: float = 0.25,
    ) -> None:
        self.feed_factory = feed_factory
        self.max_subscribers = max_subscribers
        self.buffer = buffer
        self.idle_close_s = idle_close_s
        self.assignment_timeout_s = assignment_timeout_s
        self.poll_s = poll_s
        self.kafka_status = IDLE
        self.feeds_open = 0
        self.feeds_opened = 0
        self.delivered = 0
        self._by_user: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()
        self._last_left = time.monotonic()

    @property
    def subscribers(self) -> int:
        return sum(len(subs) for subs in self._by_user.values())

    def has_room(self) -> bool:
        return self.subscribers < self.max_subscribers

    def status(self) -> dict[str, Any]:
        return {"kafka": self.kafka_status, "subscribers": self.subscribers}

    @asynccontextmanager
    async def subscribe(self, user_id: str) -> AsyncIterator[Subscription]:
        if not self.has_room():
            raise HubFull(f"{self.subscribers} live streams open; the limit is {self.max_subscribers}")
        if self._task is None:
            self._broadcast_status(CONNECTING)  # before the new subscriber joins: it reads the status first
            self._task = asyncio.create_task(self._run(), name="streamrec-live-recommendations")
        sub = Subscription(user_id, self.buffer)
        self._by_user.setdefault(user_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._by_user.get(user_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_user[user_id]
            self._last_left = time.monotonic()

    def _broadcast_status(self, status: str) -> None:
        if status == self.kafka_status:
            return
        self.kafka_status = status
        update = LiveUpdate("status", self.status())
        for subs in self._by_user.values():
            for sub in subs:
                sub.offer(update)

    def _deliver(self, message: RecommendationMessage) -> None:
        subs = self._by_user.get(message.user_id)
        if not subs:
            return
        data = message.model_dump(mode="json")
        data["received_at_ms"] = int(time.time() * 1000)
        update = LiveUpdate("recommendations", data)
        for sub in subs:
            sub.offer(update)
            self.delivered += 1

    def _idle(self) -> bool:
        return not self._by_user and time.monotonic() - self._last_left >= self.idle_close_s

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # One thread owns the consumer: librdkafka's poll and close must not run at the same time.
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-live")
        try:
            feed = await loop.run_in_executor(thread, self.feed_factory)
        except Exception as exc:
            thread.shutdown(wait=False)
            self._task = None
            self._broadcast_status(f"unavailable: {_first_line(exc)}")
            return
        self.feeds_open += 1
        self.feeds_opened += 1
        started = time.monotonic()
        try:
            while not self._idle():
                message = await loop.run_in_executor(thread, feed.poll, self.poll_s)
                if message is not None:
                    self._deliver(message)
                if feed.assigned():
                    self._broadcast_status(OK)
                elif time.monotonic() - started > self.assignment_timeout_s:
                    reason = feed.last_error() or f"no partition assigned within {self.assignment_timeout_s:.0f} s"
                    self._broadcast_status(f"unavailable: {reason}")
        finally:
            # The next subscriber starts a new consumer rather than wait for this one to close.
            if self._task is asyncio.current_task():
                self._task = None
                self.kafka_status = IDLE
            closing = loop.run_in_executor(thread, feed.close)
            thread.shutdown(wait=False)
            self._closing.add(closing)
            closing.add_done_callback(self._closed)
            await asyncio.shield(closing)

    def _closed(self, closing: asyncio.Future[None]) -> None:
        self._closing.discard(closing)
        self.feeds_open -= 1

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._by_user.clear()
