"""The archiver: interaction events -> Parquet files partitioned by event date, offsets committed after.

Events are buffered and written as one file per event date (``streamrec.archive.write_interactions``:
temporary name, fsync, rename, directory fsync) when the buffer reaches a row count, an estimated size or
an age. Only then are the offsets committed, so a crash loses nothing: what was not committed is read and
written again. A file can therefore hold events another file holds too; ``read_interactions`` drops
duplicates by ``event_id``. Files are never partial: a crash mid-write leaves a hidden temporary file,
which readers ignore (only ``*.parquet`` is read) and :func:`remove_stale_temporaries` cleans up.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from consumers.metrics import ArchiverMetrics
from streamrec.archive import INTERACTIONS_DIR, events_to_frame, write_interactions
from streamrec.client.validating import ConsumedEvent, InteractionConsumer
from streamrec.logging import librdkafka_logger
from streamrec.schemas.events import InteractionEvent
from streamrec.settings import KafkaSettings

log = logging.getLogger(__name__)

#: Per-event overhead added to the variable-length fields when estimating the buffer's size in memory.
EVENT_OVERHEAD_BYTES = 120


def estimated_bytes(event: InteractionEvent) -> int:
    return EVENT_OVERHEAD_BYTES + len(event.user_id) + len(event.item_id) + len(event.context.session_id)


@dataclass(frozen=True)
class RollPolicy:
    max_rows: int
    max_bytes: int
    max_age_s: float

    def due(self, rows: int, size: int, age_s: float) -> bool:
        return rows > 0 and (rows >= self.max_rows or size >= self.max_bytes or age_s >= self.max_age_s)


@dataclass
class Buffer:
    events: list[InteractionEvent] = field(default_factory=list)
    size: int = 0
    first_at: float | None = None  # monotonic time the oldest buffered event arrived

    def add(self, batch: list[ConsumedEvent], now: float) -> None:
        for item in batch:
            self.events.append(item.event)
            self.size += estimated_bytes(item.event)
        if batch and self.first_at is None:
            self.first_at = now

    def age(self, now: float) -> float:
        return 0.0 if self.first_at is None else now - self.first_at


def file_stem(group: str) -> str:
    """Unique and sortable: <group>-<UTC time>-<random>; a re-written batch never replaces another file."""
    return f"{group}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"


def remove_stale_temporaries(root: Path, older_than_s: float = 3600.0) -> int:
    """Delete temporary files a crashed writer left behind (never read: hidden, not ``.parquet``).

    Only old ones: another archiver of the group may be writing into the same root right now.
    """
    removed = 0
    base = root / INTERACTIONS_DIR
    if base.is_dir():
        horizon = time.time() - older_than_s
        for tmp in base.glob("date=*/.*.tmp"):
            try:
                if tmp.stat().st_mtime < horizon:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


@dataclass
class ArchiverStats:
    files: int = 0
    events: int = 0
    rolls: int = 0


class Archiver:
    def __init__(
        self,
        kafka: KafkaSettings,
        root: Path,
        group: str,
        policy: RollPolicy,
        topic: str | None = None,
        poll_max_messages: int = 5000,
        poll_timeout_s: float = 0.5,
        session_timeout_s: float = 10.0,
        metrics: ArchiverMetrics | None = None,
    ) -> None:
        self.root = root
        self.metrics = metrics or ArchiverMetrics()
        self.group = group
        self.policy = policy
        self.poll_max_messages = poll_max_messages
        self.poll_timeout_s = poll_timeout_s
        self.consumer = InteractionConsumer(
            kafka,
            group_id=group,
            component="streamrec-archiver",
            topic=topic,
            **{
                "session.timeout.ms": int(session_timeout_s * 1000),
                "heartbeat.interval.ms": int(min(3.0, session_timeout_s / 3) * 1000),
                # librdkafka's own lines (broker down, rebalances) through Python logging, emitted on poll.
                "logger": librdkafka_logger("archiver"),
            },
        )
        # The streams worker is the one dead-letter writer of interaction rejects: the archiver counts and skips.
        self.consumer.observe_dead_letters()
        self.buffer = Buffer()
        self.stats = ArchiverStats()

    def roll(self) -> list[Path]:
        """Write the buffer (atomically, one file per event date), then commit its offsets."""
        if not self.buffer.events:
            self.consumer.commit()  # offsets of rejected messages only (their dead letters are flushed first)
            return []
        started = time.monotonic()
        written = write_interactions(events_to_frame(self.buffer.events), self.root, file_stem(self.group))
        # Durable now (fsync + rename + directory fsync): only now may the offsets move on.
        self.consumer.commit()
        self.metrics.write_seconds.observe(time.monotonic() - started)
        self.metrics.events_archived.inc(len(self.buffer.events))
        self.metrics.files_written.inc(len(written))
        self.metrics.rolls.inc()
        self.metrics.last_write.set(time.time())
        self.metrics.buffered_events.set(0)
        self.stats.files += len(written)
        self.stats.events += len(self.buffer.events)
        self.stats.rolls += 1
        log.info("archived %d events in %d files", len(self.buffer.events), len(written))
        self.buffer = Buffer()
        return written

    def step(self) -> None:
        rejected_before = self.consumer.stats.invalid
        batch = self.consumer.poll_batch(self.poll_max_messages, self.poll_timeout_s)
        now = time.monotonic()
        self.buffer.add(batch, now)
        self.metrics.last_poll.set(time.time())
        self.metrics.events_rejected.inc(self.consumer.stats.invalid - rejected_before)
        self.metrics.buffered_events.set(len(self.buffer.events))
        if self.policy.due(len(self.buffer.events), self.buffer.size, self.buffer.age(now)):
            self.roll()

    def run(self, should_stop: Callable[[], bool], idle_exit_s: float | None = None) -> ArchiverStats:
        """Until ``should_stop()`` (or ``idle_exit_s`` without messages); the buffer is written before return."""
        log.info("archiving %s as group %s into %s", self.consumer.topic, self.group, self.root)
        removed = remove_stale_temporaries(self.root)
        if removed:
            log.info("removed %d temporary files of an interrupted write", removed)
        last_message, received = time.monotonic(), 0
        try:
            while not should_stop():
                self.step()
                now_received = self.consumer.stats.valid + self.consumer.stats.invalid
                if now_received != received:
                    received, last_message = now_received, time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - last_message >= idle_exit_s:
                    break
            self.roll()
        finally:
            self.consumer.close()
        return self.stats
