"""The worker's two batch processors, as I/O orchestration around the pure planning in :mod:`streams.batch`.

They know nothing of Faust: the state tables, topic senders, Bloom store, Feast pusher and refresher
come in through small protocols, and the Faust agents (``streams.app``) only adapt to them. Order of
effects for one batch of interactions, and why:

1. decode + validate (clock-skew policy against the broker's append time, Kafka key = user id); rejects
   to the DLQ with the reason, bounded in size (this worker is the one DLQ writer of the interactions
   topic; a DLQ send that fails is retried with the smallest record, never crashing the worker);
2. per user: apply to the state, write the state once (counters and dedupe markers in one changelog
   message, bound to the partition of the user's last event in the batch), acknowledged before step 5;
3. one pipelined Bloom write for the whole batch (retried until it succeeds);
4. forward de-duplicated events to the by-item topic in bundles, acknowledged by the broker before step 5
   (a bundle whose delivery failed is sent again);
5. hand the feature rows to the pusher with ``release``: the batch's offsets become committable only
   once the rows are pushed (at-least-once for every side effect; idempotent on re-read);
6. schedule recommendation refreshes (best effort).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from streamrec.client.dlq import DLQ_OWNER, DeadLetterRole, DeadLetterWriter
from streamrec.errors import InvalidEventError
from streamrec.features import FEAST_ITEM_PUSH_SOURCE, FEAST_USER_PUSH_SOURCE
from streamrec.retry import Backoff, PermanentStoreError, permanent_error, retry_async, transient_error
from streamrec.schemas.codec import DEFAULT_MAX_FUTURE_SKEW, check_key_matches, decode_interaction, skew_reference
from streamrec.schemas.dead_letter import MIN_RECORD_BYTES, build_dead_letter
from streamrec.schemas.events import EventContext
from streams.batch import (
    ItemBundle,
    bundle_forwards,
    decode_bundle,
    encode_bundle,
    group_bundles_by_item,
    plan_item,
    plan_user,
    spans_by_item,
    to_record,
)
from streams.feast_schema import item_row, user_row
from streams.metrics import WorkerMetrics
from streams.recs import Trigger
from streams.state import DedupeLimits, EventRecord, ItemState, Span, UserState, runs

log = logging.getLogger(__name__)

S = TypeVar("S")
T = TypeVar("T")
Release = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as read: raw bytes and position, plus the transport's handle (a Faust event)."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    handle: Any = None
    timestamp_ms: int | None = None  # the record's Kafka timestamp
    log_append_time: bool = False  # the timestamp is the broker's append time (not the producer's choice)


class StateTable(Protocol[S]):
    def get(self, key: str) -> S | None: ...

    def put(self, key: str, value: S, handle: Any) -> None:
        """Store ``value``; ``handle`` is the message whose partition the write belongs to."""

    async def durable(self) -> None:
        """Return once every ``put`` so far is durable (acknowledged by the changelog's broker)."""


class Send(Protocol):
    async def __call__(self, key: bytes | None, value: bytes, partition: int | None = None) -> Awaitable[Any] | None:
        """Queue the message; returns its delivery acknowledgement to await (None: delivered already)."""


class BloomPort(Protocol):
    async def add(self, items_by_user: Mapping[str, Sequence[str]]) -> None: ...


class PusherPort(Protocol):
    async def submit(self, source: str, rows: Mapping[str, dict[str, Any]], events: int, release: Release) -> None: ...


class ScoresPort(Protocol):
    async def update(self, scores: Mapping[str, float]) -> None: ...


class RefresherPort(Protocol):
    def notify_many(self, triggers: Sequence[tuple[str, Trigger]]) -> None: ...


async def retrying(op: Callable[[], Awaitable[T]], store: str, metrics: WorkerMetrics, max_backoff_s: float) -> T:
    """Run ``op`` until it succeeds: an unreachable store stalls the stream instead of losing effects. A
    permanent error (:func:`streamrec.retry.permanent_error`) is raised at once as :class:`PermanentStoreError`."""

    def on_retry(exc: BaseException, wait_s: float) -> None:  # connection loss, timeouts, loading
        metrics.store_errors.labels(store).inc()
        log.warning("%s call failed (%s); retrying in %.2fs", store, exc, wait_s)

    backoff = Backoff(max_s=max_backoff_s)
    try:
        return await retry_async(op, backoff, retry_if=transient_error, on_retry=on_retry)
    except Exception as exc:
        if permanent_error(exc):
            metrics.store_errors.labels(store).inc()
            raise PermanentStoreError(store, exc) from exc
        raise


class InteractionsProcessor:
    def __init__(
        self,
        *,
        topic: str,
        users: StateTable[UserState],
        dlq: Send,
        forward: Send,
        bloom: BloomPort,
        metrics: WorkerMetrics,
        category_of: Callable[[str], str],
        limits: DedupeLimits,
        by_item_partitions: int,
        pusher: PusherPort | None = None,
        refresher: RefresherPort | None = None,
        dead_letters: DeadLetterWriter | None = None,
        max_event_bytes: int = 16_384,
        max_future_skew_s: float | None = DEFAULT_MAX_FUTURE_SKEW.total_seconds(),
        max_backoff_s: float = 5.0,
    ) -> None:
        self.topic = topic
        self.users = users
        self.dlq = dlq
        self.forward = forward
        self.bloom = bloom
        self.metrics = metrics
        self.category_of = category_of
        self.limits = limits
        self.by_item_partitions = by_item_partitions
        self.pusher = pusher
        self.refresher = refresher
        self.dead_letters = dead_letters or DeadLetterWriter(DLQ_OWNER, DeadLetterRole.WRITER)
        self.max_event_bytes = max_event_bytes
        self.max_future_skew_s = max_future_skew_s
        self.max_backoff_s = max_backoff_s

    async def reject(self, error: InvalidEventError, msg: Incoming) -> None:
        """Count the reject by reason and send its dead letter; a failed send never stops the worker."""
        self.metrics.events_invalid.labels(error.code.value).inc()
        record = self.dead_letters.letter(error, msg.value, msg.key, self.topic, msg.partition, msg.offset)
        if record is None:  # an observing writer: another consumer group writes the dead letters
            return
        try:
            await self.dlq(record.key, record.value)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the producer's request size is below the record's
            log.warning(
                "dead letter of %d/%d not sent (%r); sending the smallest record", msg.partition, msg.offset, exc
            )
        small = build_dead_letter(
            error,
            msg.value,
            msg.key,
            self.topic,
            msg.partition,
            msg.offset,
            self.dead_letters.component,
            MIN_RECORD_BYTES,
        )
        await retrying(lambda: self.dlq(small.key, small.value), "dlq", self.metrics, self.max_backoff_s)

    async def send_bundles(self, bundles: Sequence[tuple[int, bytes]]) -> None:
        """Send every (partition, bundle) and return once the broker acknowledged each; one whose delivery
        failed is sent again until acknowledged (the item side skips what it has applied already)."""
        acks = [(dest, payload, await self.forward(None, payload, dest)) for dest, payload in bundles]
        pending = [(dest, payload, ack) for dest, payload, ack in acks if ack is not None]
        outcomes = await asyncio.gather(*(ack for _, _, ack in pending), return_exceptions=True)
        for (dest, payload, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                log.warning("by-item bundle to partition %d not delivered (%r); sending it again", dest, outcome)
                self.metrics.store_errors.labels("kafka").inc()
                await retrying(partial(self._send_and_wait, dest, payload), "kafka", self.metrics, self.max_backoff_s)

    async def _send_and_wait(self, dest: int, payload: bytes) -> None:
        ack = await self.forward(None, payload, dest)
        if ack is not None:
            await ack

    async def process(self, batch: Sequence[Incoming], release: Release) -> None:
        began = time.perf_counter()
        m = self.metrics
        m.events_in.inc(len(batch))
        # The offset ranges this batch read, per partition: what the users' and items' coverage takes.
        offsets: dict[int, list[int]] = {}
        for msg in batch:
            offsets.setdefault(msg.partition, []).append(msg.offset)
        spans: dict[int, list[Span]] = {p: runs(o) for p, o in offsets.items()}
        by_user: dict[str, list[tuple[EventRecord, Incoming]]] = {}
        # Keyed by user too: one event id reused by two users must not hand one user the other's context.
        contexts: dict[tuple[str, int], tuple[str, EventContext]] = {}
        read_at_ms = int(time.time() * 1000)
        for msg in batch:
            # The broker's append time where the topic stamps it (the same on every re-read), else None: this
            # worker's clock. It is "now" for the clock-skew policy and the read time for the dedupe window.
            appended = skew_reference(msg.timestamp_ms, msg.log_append_time)
            try:
                event = decode_interaction(
                    msg.value or b"", self.max_event_bytes, max_future_skew=self.max_future_skew_s, now=appended
                )
                check_key_matches(event, msg.key)
            except InvalidEventError as exc:
                await self.reject(exc, msg)
                continue
            read_ms = read_at_ms if appended is None or msg.timestamp_ms is None else msg.timestamp_ms
            rec = to_record(event, msg.partition, msg.offset, read_ms)
            contexts[(rec.user_id, rec.event_id)] = (event.event_id, event.context)
            by_user.setdefault(rec.user_id, []).append((rec, msg))

        bloom: dict[str, list[str]] = {}
        forwards: list[EventRecord] = []
        rows: dict[str, dict[str, Any]] = {}
        triggers: list[tuple[str, EventRecord]] = []
        computed_at = datetime.now(UTC)
        for user_id, pairs in by_user.items():
            state, effect = plan_user(
                self.users.get(user_id), [r for r, _ in pairs], self.category_of, self.limits, spans
            )
            if effect.changed:
                self.users.put(user_id, state, pairs[-1][1].handle)
            if effect.duplicates:
                m.events_deduped.inc(effect.duplicates)
            if effect.reprocessed:
                m.events_reprocessed.inc(effect.reprocessed)
            if effect.stale:
                m.events_stale.inc(effect.stale)
            if effect.bloom_items:
                bloom[user_id] = effect.bloom_items
            forwards.extend(effect.forwards)
            if effect.features is not None:
                rows[user_id] = user_row(user_id, effect.features, computed_at)
            if effect.trigger is not None:
                triggers.append((user_id, effect.trigger))

        if bloom:
            bloom_began = time.perf_counter()
            await retrying(lambda: self.bloom.add(bloom), "redis", m, self.max_backoff_s)
            m.bloom_seconds.observe(time.perf_counter() - bloom_began)
        grouped = bundle_forwards(forwards, self.by_item_partitions, spans)
        await self.send_bundles([(dest, encode_bundle(b)) for dest, bundles in grouped.items() for b in bundles])
        await self.users.durable()  # the state (counters + dedupe markers) before the offsets can move
        if self.pusher is not None:
            await self.pusher.submit(FEAST_USER_PUSH_SOURCE, rows, len(batch), release)
        else:
            release()
        if self.refresher is not None and triggers:
            # After the Bloom write: a refresh must already exclude the items of these events.
            now = time.monotonic()
            self.refresher.notify_many([(u, Trigger(*contexts[(u, t.event_id)], t.ts_ms, now)) for u, t in triggers])
        done = time.time()
        for rec_pairs in by_user.values():
            for rec, _ in rec_pairs:
                m.event_age.observe(max(done - rec.ts_ms / 1000.0, 0.0))
        m.batch_size.labels("interactions").observe(len(batch))
        m.batch_seconds.labels("interactions").observe(time.perf_counter() - began)


class ItemsProcessor:
    def __init__(
        self,
        *,
        items: StateTable[ItemState],
        metrics: WorkerMetrics,
        scores: ScoresPort | None = None,
        pusher: PusherPort | None = None,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.items = items
        self.metrics = metrics
        self.scores = scores
        self.pusher = pusher
        self.max_backoff_s = max_backoff_s

    async def process(self, batch: Sequence[Incoming], release: Release) -> None:
        began = time.perf_counter()
        bundles: list[ItemBundle] = []
        handle_of_item: dict[str, Any] = {}
        for msg in batch:
            try:
                bundle = decode_bundle(msg.value or b"")
            except InvalidEventError as exc:
                # Internal topic: only this worker writes it, so this is a bug or a foreign writer. The
                # events it stood for were counted per user already; log loudly and go on.
                log.error("skipping by-item message at %d/%d: %s", msg.partition, msg.offset, exc)
                self.metrics.events_invalid.labels(exc.code.value).inc()
                continue
            bundles.append(bundle)
            for entry in bundle.entries:
                handle_of_item[entry.item_id] = msg.handle
        rows: dict[str, dict[str, Any]] = {}
        scores: dict[str, float] = {}
        computed_at = datetime.now(UTC)
        item_spans = spans_by_item(bundles)
        for item_id, entries in group_bundles_by_item(bundles).items():
            state, effect = plan_item(self.items.get(item_id), entries, item_spans.get(item_id, ()))
            if effect.skipped:
                self.metrics.item_entries_skipped.inc(effect.skipped)
            if effect.features is None:
                continue  # nothing applied: the coverage it may have gained is re-derived on a re-read
            self.items.put(item_id, state, handle_of_item[item_id])
            rows[item_id] = item_row(item_id, effect.features, computed_at)
            scores[item_id] = effect.features.popularity_24h
        if scores and self.scores is not None:
            scores_port = self.scores
            await retrying(lambda: scores_port.update(scores), "redis", self.metrics, self.max_backoff_s)
        await self.items.durable()
        if self.pusher is not None:
            await self.pusher.submit(FEAST_ITEM_PUSH_SOURCE, rows, len(batch), release)
        else:
            release()
        self.metrics.batch_size.labels("items").observe(len(batch))
        self.metrics.batch_seconds.labels("items").observe(time.perf_counter() - began)
