"""Helpers of the live-stream and browser tests: the API served by a real uvicorn in a thread (so streams and
disconnects are real HTTP), a reader of Server-Sent Events, and an in-memory recommendation feed."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from streamrec.schemas.events import RecommendationMessage, RecommendedItem


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` on a free port until the block ends (lifespan included); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None = None


@dataclass
class SseReader:
    """Reads one event stream in a thread; ``close()`` drops the connection like a closed browser tab."""

    url: str
    headers: dict[str, str]
    events: queue.Queue[SseEvent] = field(default_factory=queue.Queue)
    comments: int = 0
    status_code: int | None = None
    _client: httpx.Client | None = None
    _thread: threading.Thread | None = None
    _opened: threading.Event = field(default_factory=threading.Event)

    def open(self) -> SseReader:
        self._client = httpx.Client(timeout=httpx.Timeout(30.0, read=None))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._opened.wait(10):
            raise AssertionError(f"no response from {self.url}")
        return self

    def _read(self) -> None:
        assert self._client is not None
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as response:
                self.status_code = response.status_code
                self._opened.set()
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments += 1
                    elif not line:
                        if "data" in fields:
                            data = json.loads(fields["data"])
                            self.events.put(SseEvent(fields.get("event", "message"), data, fields.get("id")))
                        fields = {}
                    else:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test
        finally:
            self._opened.set()

    def next(self, kind: str, timeout_s: float = 10.0) -> SseEvent:
        """The next event of ``kind`` (events of other kinds before it are skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} event within {timeout_s} s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event.event == kind:
                return event

    def drain(self, wait_s: float) -> list[SseEvent]:
        time.sleep(wait_s)
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._thread is not None:
            self._thread.join(10)


def message(user_id: str, items: list[str], trigger: str | None = None) -> RecommendationMessage:
    from datetime import UTC, datetime

    return RecommendationMessage(
        user_id=user_id,
        items=[RecommendedItem(item_id=i, score=1.0 - n / 10, rank=n + 1) for n, i in enumerate(items)],
        model_version="v-test",
        generated_at=datetime.now(UTC),
        trigger_event_id=trigger,
    )


class FakeFeed:
    """An in-memory recommendations topic; ``assigned`` False until ``assign_after_s`` (never when None)."""

    def __init__(self, topic: FakeTopic) -> None:
        self.topic = topic
        self.closed = False
        self.opened_at = time.monotonic()
        self.inbox: queue.Queue[RecommendationMessage] = queue.Queue()
        topic.feeds.append(self)

    def poll(self, timeout_s: float) -> RecommendationMessage | None:
        if self.closed:
            raise RuntimeError("poll on a closed feed")
        try:
            return self.inbox.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def assigned(self) -> bool:
        after = self.topic.assign_after_s
        return after is not None and time.monotonic() - self.opened_at >= after

    def last_error(self) -> str | None:
        return self.topic.error

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeTopic:
    assign_after_s: float | None = 0.0
    error: str | None = None
    feeds: list[FakeFeed] = field(default_factory=list)

    def factory(self) -> FakeFeed:
        return FakeFeed(self)

    def publish(self, msg: RecommendationMessage) -> None:
        for feed in self.feeds:
            if not feed.closed:
                feed.inbox.put(msg)

    @property
    def open_feeds(self) -> int:
        return sum(not f.closed for f in self.feeds)


@pytest.fixture
def topic() -> FakeTopic:
    return FakeTopic()
