"""Recommendation refresh: which users to refresh when (debounced), and where recommendations come from.

:class:`RefreshSchedule` is pure: a user with new events is refreshed at once unless they were refreshed
less than ``debounce`` ago, in which case one refresh is due when the interval has passed (carrying the
latest trigger, so the message reflects every event up to then).

Sources implement :class:`RecommendationSource` and speak the pipeline client's own types
(:class:`~streamrec.pipeline_client.RecommendRequest` in, :class:`~streamrec.pipeline_client.RecommendResult`
out). :class:`PipelineSource` calls serving's Triton pipeline through :class:`streamrec.pipeline_client.
AsyncPipelineClient`; :class:`StreamingPopularity` is the fallback built from the worker's own item statistics
(a Redis sorted set of 24 h trending-weighted activity kept by the item agent), minus the items in the user's
Bloom filter, flagged ``popularity_fallback``. A result's ``source`` says who answered: ``triton``, ``fallback``
(the pipeline client's popular items from the export) or ``popularity`` (the worker's streaming popularity).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from streamrec.artifacts import read_current
from streamrec.bloom import AsyncSeenItemStore
from streamrec.errors import ArtifactError
from streamrec.pipeline_client import (
    POPULARITY_FALLBACK,
    AsyncPipelineClient,
    LiveAvailability,
    RecommendRequest,
    RecommendResult,
)
from streamrec.schemas.events import EventContext, RecommendationMessage, RecommendedItem

log = logging.getLogger(__name__)

POPULARITY_VERSION = "popularity-fallback"


@dataclass(frozen=True, slots=True)
class Trigger:
    """The event a refresh answers: the latest new event of the user when the refresh runs."""

    event_id: str
    context: EventContext
    timestamp_ms: int
    noticed_at: float  # monotonic time its batch finished processing


class RecommendationSource(Protocol):
    name: str

    async def recommend(self, request: RecommendRequest) -> RecommendResult: ...

    async def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[RecommendResult | BaseException]:
        """One result (or the error) per request, in order: the refresher asks for every due user at once."""
        ...

    async def close(self) -> None: ...


async def gather_each(
    source: RecommendationSource, requests: Sequence[RecommendRequest], concurrency: int
) -> list[RecommendResult | BaseException]:
    """``recommend_many`` for sources that answer one request at a time (bounded concurrency)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(request: RecommendRequest) -> RecommendResult:
        async with slots:
            return await source.recommend(request)

    return list(await asyncio.gather(*(one(r) for r in requests), return_exceptions=True))


# ---------------------------------------------------------------------------------------------------- schedule


SCHEDULED, COALESCED, DROPPED = "scheduled", "coalesced", "dropped"


@dataclass
class RefreshSchedule:
    """Per-user debounce: at most one refresh per user per ``debounce_s``, carrying the user's newest trigger.
    At most ``max_pending`` users wait (None: unbounded); a new user beyond that is dropped (its next event,
    once there is room, schedules it again), so a slow recommender bounds memory instead of growing it."""

    debounce_s: float
    max_pending: int | None = None
    pending: dict[str, Trigger] = field(default_factory=dict)
    due_at: dict[str, float] = field(default_factory=dict)
    last_sent: dict[str, float] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)

    def notify(self, user_id: str, trigger: Trigger, now: float) -> str:
        """:data:`SCHEDULED`, :data:`COALESCED` (already waiting: it will carry this newer trigger) or
        :data:`DROPPED` (``max_pending`` users wait already)."""
        if user_id in self.pending:
            self.pending[user_id] = trigger
            return COALESCED
        if self.max_pending is not None and len(self.pending) >= self.max_pending:
            return DROPPED
        self.pending[user_id] = trigger
        due = max(now, self.last_sent.get(user_id, float("-inf")) + self.debounce_s)
        self.due_at[user_id] = due
        heapq.heappush(self._heap, (due, user_id))
        return SCHEDULED

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[tuple[str, Trigger]]:
        """The users due at ``now`` (at most ``limit``), earliest first."""
        out: list[tuple[str, Trigger]] = []
        while self._heap and self._heap[0][0] <= now and (limit is None or len(out) < limit):
            _, user_id = heapq.heappop(self._heap)
            self.due_at.pop(user_id, None)
            trigger = self.pending.pop(user_id, None)
            if trigger is not None:
                out.append((user_id, trigger))
                self.last_sent[user_id] = now
        if len(self.last_sent) > 4 * max(len(self.pending), 1024):
            # Forget users whose debounce interval is over: it no longer constrains them.
            horizon = now - self.debounce_s
            self.last_sent = {u: t for u, t in self.last_sent.items() if t > horizon}
        return out


# ---------------------------------------------------------------------------------------------------- sources


def unavailable_in_current_export(availability: LiveAvailability, export_root: Path) -> frozenset[str]:
    """What the live catalog of the CURRENT export holds as unavailable (blocking; empty without an export)."""
    try:
        version = read_current(export_root)
    except ArtifactError:
        return frozenset()
    return availability.unavailable(version)


class StreamingPopularity:
    """Most active items of the last 24 h (as the worker counts them), minus what the user has seen and what
    ``hidden()`` names (the items the live catalog holds as unavailable)."""

    name = "popularity"

    def __init__(
        self,
        store: AsyncSeenItemStore,
        key: str,
        candidates: int,
        cache_s: float = 0.25,
        hidden: Callable[[], Awaitable[frozenset[str]]] | None = None,
    ) -> None:
        self.store = store
        self.hidden = hidden
        self.key = key
        self.candidates = candidates
        self.cache_s = cache_s
        self._cached: list[tuple[str, float]] = []
        self._cached_at = float("-inf")

    async def _top(self) -> list[tuple[str, float]]:
        # One ZREVRANGE (and one look at what is unavailable) serves every refresh of the next cache_s:
        # popularity moves slowly, and an item taken off sale stays out at most cache_s later.
        if time.monotonic() - self._cached_at > self.cache_s:
            reply = await self.store.client.zrevrange(self.key, 0, self.candidates - 1, withscores=True)
            top = [(m.decode() if isinstance(m, bytes) else str(m), float(s)) for m, s in reply]
            if self.hidden is not None:
                gone = await self.hidden()
                top = [pair for pair in top if pair[0] not in gone]
            self._cached = top
            self._cached_at = time.monotonic()
        return self._cached

    async def recommend(self, request: RecommendRequest) -> RecommendResult:
        result = (await self.recommend_many([request]))[0]
        if isinstance(result, BaseException):
            raise result
        return result

    async def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[RecommendResult | BaseException]:
        """One pipelined round trip tests the candidates against every requesting user's filter."""
        top = await self._top()
        if not top:
            return [self._result([]) for _ in requests]
        candidates = [item for item, _ in top]
        backend = self.store.backend
        pipe = self.store.client.pipeline(transaction=False)
        for request in requests:
            pipe.execute_command(*backend.check_command(request.user_id or "", candidates))
        replies = await pipe.execute(raise_on_error=False)
        out: list[RecommendResult | BaseException] = []
        for request, reply in zip(requests, replies, strict=True):
            if isinstance(reply, BaseException):
                out.append(reply)
                continue
            seen = backend.parse_check(reply, len(candidates))
            items = [pair for pair, was_seen in zip(top, seen, strict=True) if not was_seen][: request.k]
            out.append(self._result(items))
        return out

    def _result(self, items: list[tuple[str, float]]) -> RecommendResult:
        return RecommendResult(
            [item for item, _ in items],
            [score for _, score in items],
            POPULARITY_VERSION,
            [POPULARITY_FALLBACK],
            source=self.name,
        )

    async def close(self) -> None:
        return None


class PipelineSource:
    """Serving's recommendation pipeline (Triton) through :class:`streamrec.pipeline_client.AsyncPipelineClient`."""

    name = "pipeline"

    def __init__(self, client: AsyncPipelineClient, concurrency: int = 8) -> None:
        self.client = client
        self.concurrency = concurrency

    @classmethod
    def create(cls, concurrency: int = 8, availability: LiveAvailability | None = None) -> PipelineSource | None:
        """None when the client cannot be built (tritonclient not installed, bad Triton settings). Its popularity
        fallback leaves out what ``availability`` holds as unavailable."""
        try:
            client = AsyncPipelineClient(availability=availability)
        except Exception as exc:  # ImportError of tritonclient, ConfigError: fall back
            log.info("recommendation pipeline client unavailable (%s); using the popularity fallback", exc)
            return None
        return cls(client, concurrency)

    async def ready(self) -> bool:
        return bool(await self.client.ready())

    async def recommend(self, request: RecommendRequest) -> RecommendResult:
        return await self.client.recommend(request)

    async def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[RecommendResult | BaseException]:
        return await gather_each(self, requests, self.concurrency)

    async def close(self) -> None:
        await self.client.close()


class AutoSource:
    """The pipeline while its ensemble is ready (checked every ``check_s``), else the popularity fallback."""

    name = "auto"

    def __init__(self, pipeline: PipelineSource | None, fallback: RecommendationSource, check_s: float = 10.0) -> None:
        self.pipeline = pipeline
        self.fallback = fallback
        self.check_s = check_s
        self._ready = False
        self._checked = float("-inf")

    async def _pipeline_ready(self) -> bool:
        if self.pipeline is None:
            return False
        if time.monotonic() - self._checked > self.check_s:
            self._checked = time.monotonic()
            try:
                self._ready = await self.pipeline.ready()
            except Exception:
                self._ready = False
        return self._ready

    async def recommend(self, request: RecommendRequest) -> RecommendResult:
        if self.pipeline is not None and await self._pipeline_ready():
            result = await self.pipeline.recommend(request)
            if result.items:
                return result
        return await self.fallback.recommend(request)

    async def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[RecommendResult | BaseException]:
        if self.pipeline is None or not await self._pipeline_ready():
            return await self.fallback.recommend_many(requests)
        results = await self.pipeline.recommend_many(requests)
        retry = [n for n, r in enumerate(results) if isinstance(r, BaseException) or not r.items]
        if retry:
            fallback = await self.fallback.recommend_many([requests[n] for n in retry])
            for n, result in zip(retry, fallback, strict=True):
                results[n] = result
        return results

    async def close(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.close()


# ---------------------------------------------------------------------------------------------------- refresher

Publish = Callable[[str, bytes], Awaitable[None]]


def build_message(user_id: str, trigger: Trigger, result: RecommendResult) -> RecommendationMessage:
    return RecommendationMessage(
        user_id=user_id,
        items=[
            RecommendedItem(item_id=i, score=float(s), rank=n + 1)
            for n, (i, s) in enumerate(zip(result.items, result.scores, strict=True))
        ],
        model_version=result.model_version,
        generated_at=datetime.now(UTC),
        trigger_event_id=trigger.event_id,
        context=trigger.context,
        flags=result.flags,
    )


class Refresher:
    """Runs the schedule on its own task: asks the source for due users, publishes their messages.

    Isolated from ingest: :meth:`notify_many` only records triggers (no await), so a slow or dead recommender
    never slows the Bloom and feature updates; what it costs is skipped refreshes, counted by ``on_skipped``
    (``coalesced``: a waiting user's newer trigger replaced the older one; ``dropped``: ``max_pending`` users
    waited already; ``failed``: the source or the publish failed). At most ``max_per_s`` refreshes start per
    second (a token bucket holding one request batch), so a burst of users cannot flood the recommender.
    """

    def __init__(
        self,
        source: RecommendationSource,
        publish: Publish,
        k: int,
        debounce_s: float,
        concurrency: int,
        on_published: Callable[[str, float], None] | None = None,
        *,
        max_per_s: float | None = None,
        max_pending: int | None = None,
        on_skipped: Callable[[str, int], None] | None = None,
    ) -> None:
        if max_per_s is not None and max_per_s <= 0:
            raise ValueError(f"max_per_s must be > 0 or None, got {max_per_s}")
        self.source = source
        self.publish = publish
        self.k = k
        self.schedule = RefreshSchedule(debounce_s, max_pending)
        self.concurrency = concurrency
        self.on_published = on_published
        self.on_skipped = on_skipped
        self.max_batch = max(concurrency, 1) * 16
        self.max_per_s = max_per_s
        self._tokens = float(self.max_batch)
        self._tokens_at = time.monotonic()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self.schedule.pending)

    def _skipped(self, reason: str, n: int = 1) -> None:
        if self.on_skipped is not None and n:
            self.on_skipped(reason, n)

    def notify(self, user_id: str, trigger: Trigger) -> None:
        outcome = self.schedule.notify(user_id, trigger, time.monotonic())
        if outcome != SCHEDULED:
            self._skipped(outcome)
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="recs-refresher")

    def notify_many(self, triggers: Sequence[tuple[str, Trigger]]) -> None:
        for user_id, trigger in triggers:
            self.notify(user_id, trigger)

    def _allowance(self, now: float) -> int | None:
        """Refreshes the rate bound allows now (None: unbounded)."""
        if self.max_per_s is None:
            return None
        self._tokens = min(float(self.max_batch), self._tokens + (now - self._tokens_at) * self.max_per_s)
        self._tokens_at = now
        return int(self._tokens)

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            allowed = self._allowance(now)
            nxt = self.schedule.next_due()
            if allowed == 0 and nxt is not None and nxt <= now and self.max_per_s is not None:
                await asyncio.sleep((1.0 - self._tokens) / self.max_per_s)  # until one token
                continue
            due = self.schedule.pop_due(now, allowed)
            if self.max_per_s is not None:
                self._tokens -= len(due)
            for start in range(0, len(due), self.max_batch):
                # Awaited in line: while a batch is out, new triggers accumulate (and coalesce per user).
                await self._refresh(due[start : start + self.max_batch])
            nxt = self.schedule.next_due()
            if nxt is not None and nxt <= time.monotonic():
                continue
            self._wakeup.clear()
            timeout = None if nxt is None else max(nxt - time.monotonic(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _refresh(self, due: Sequence[tuple[str, Trigger]]) -> None:
        requests = [RecommendRequest(u, self.k, t.context.device.value, t.timestamp_ms) for u, t in due]
        try:
            results = await self.source.recommend_many(requests)
        except Exception as exc:  # a refresh is best effort: the users' next events trigger another
            log.warning("recommendation refresh of %d users failed: %s", len(due), exc)
            self._skipped("failed", len(due))
            return
        for (user_id, trigger), result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("recommendation refresh for %s failed: %s", user_id, result)
                self._skipped("failed")
                continue
            try:
                message = build_message(user_id, trigger, result)
                await self.publish(user_id, message.model_dump_json().encode())
            except Exception as exc:
                log.warning("publishing recommendations for %s failed: %s", user_id, exc)
                self._skipped("failed")
                continue
            if self.on_published is not None:
                self.on_published(result.source, time.monotonic() - trigger.noticed_at)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.source.close()
