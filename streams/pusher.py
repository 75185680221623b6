"""Micro-batched pushes to the Feast online store, off the event loop, holding offsets until durable.

Rows are coalesced per entity (the latest state wins: a row is a snapshot, not a delta) and pushed when
the oldest waiting row is ``flush_ms`` old or ``flush_rows`` rows wait, whichever comes first. The Feast
SDK is synchronous, so each push runs in a single worker thread (pushes stay ordered); the event loop
keeps consuming meanwhile.

Each submitted batch comes with a ``release`` callback that the worker uses to let the batch's offsets be
committed. It is called only after a push containing those rows (or newer rows of the same entities)
has succeeded, so a crash can never commit an offset whose features were not pushed: the events are
read again and their rows pushed again.

A permanent failure (:func:`streamrec.retry.permanent_error`: WRONGTYPE, OOM, refused credentials) is not
retried: the pusher stops, and the next :meth:`MicroBatchPusher.submit` raises it as
:class:`~streamrec.retry.PermanentStoreError`, so the worker stops with that message. :meth:`close` waits
at most ``close_timeout_s`` for pending pushes (Feast may be down): what is not pushed by then stays
uncommitted and is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streamrec.retry import Backoff, PermanentStoreError, permanent_error, retry_async, transient_error
from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)

PushFn = Callable[[str, list[dict[str, Any]]], None]
Release = Callable[[], None]


@dataclass
class _Buffer:
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # source -> entity -> row
    releases: list[Release] = field(default_factory=list)
    events: int = 0
    first_at: float | None = None  # monotonic time the oldest waiting row arrived

    @property
    def n_rows(self) -> int:
        return sum(len(r) for r in self.rows.values())


class MicroBatchPusher:
    def __init__(
        self,
        push: PushFn,
        metrics: WorkerMetrics,
        flush_ms: int = 100,
        flush_rows: int = 500,
        max_pending_events: int = 50_000,
        max_backoff_s: float = 5.0,
        close_timeout_s: float = 10.0,
    ) -> None:
        self._push = push
        self.close_timeout_s = close_timeout_s
        self.failure: PermanentStoreError | None = None
        self.metrics = metrics
        self.flush_s = flush_ms / 1000.0
        self.flush_rows = flush_rows
        self.max_pending_events = max_pending_events
        self.max_backoff_s = max_backoff_s
        self._buffer = _Buffer()
        self._in_flight_events = 0
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feast-push")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pending_events(self) -> int:
        return self._buffer.events + self._in_flight_events

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="feast-pusher")
            self._task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Nothing is released any more: offsets stop being committed. Say so loudly.
            log.error("Feast pusher stopped: %r", task.exception(), exc_info=task.exception())

    async def submit(self, source: str, rows: Mapping[str, dict[str, Any]], events: int, release: Release) -> None:
        """Queue rows (entity id -> row) standing for ``events`` processed events; waits if too much is pending.
        Raises :class:`PermanentStoreError` once a push has failed permanently."""
        if self.failure is not None:
            raise self.failure
        while self.pending_events >= self.max_pending_events and not self._stopping:
            # Back-pressure: the stream stops taking new batches until a push completes.
            self._space.clear()
            await self._space.wait()
            if self.failure is not None:
                raise self.failure
        buf = self._buffer
        if rows:
            buf.rows.setdefault(source, {}).update(rows)
            if buf.first_at is None:
                buf.first_at = time.monotonic()
        buf.releases.append(release)
        buf.events += events
        # Always wake the flusher: it (re)computes how long the oldest row may still wait.
        self._wakeup.set()
        self.start()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            buf = self._buffer
            if buf.first_at is None and not buf.releases:
                self._drained.set()
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._drained.clear()
            if buf.first_at is not None and buf.n_rows < self.flush_rows and not self._stopping:
                wait = buf.first_at + self.flush_s - time.monotonic()
                if wait > 0:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), wait)
                    continue
            # Swap: new submissions fill a fresh buffer while this one is pushed.
            self._buffer, batch = _Buffer(), buf
            self._in_flight_events = batch.events
            try:
                await self._push_with_retry(loop, batch)
            except Exception as exc:
                if not permanent_error(exc):
                    raise
                self.failure = PermanentStoreError("feast", exc)
                log.error("%s", self.failure)
                self._space.set()  # wake a waiting submit: it raises the failure
                return
            self._in_flight_events = 0
            for release in batch.releases:
                try:
                    release()
                except Exception:  # a release must never stop the flusher: later batches depend on it
                    log.exception("releasing a pushed batch failed")
            self._space.set()

    async def _push_with_retry(self, loop: asyncio.AbstractEventLoop, batch: _Buffer) -> None:
        for source, by_entity in batch.rows.items():
            rows = list(by_entity.values())
            for start in range(0, len(rows), self.flush_rows):
                chunk = rows[start : start + self.flush_rows]
                await retry_async(
                    partial(self._push_once, loop, source, chunk),
                    Backoff(max_s=self.max_backoff_s),
                    retry_if=transient_error,
                    on_retry=partial(self._on_push_failed, source),
                )

    async def _push_once(self, loop: asyncio.AbstractEventLoop, source: str, chunk: list[dict[str, Any]]) -> None:
        began = time.perf_counter()
        await loop.run_in_executor(self._executor, self._push, source, chunk)
        self.metrics.feast_seconds.labels(source).observe(time.perf_counter() - began)
        self.metrics.feast_rows.labels(source).inc(len(chunk))

    def _on_push_failed(self, source: str, exc: BaseException, wait_s: float) -> None:
        # A transient Feast/Redis failure: retried, the batch's offsets stay uncommitted meanwhile.
        self.metrics.store_errors.labels("feast").inc()
        log.warning("Feast push to %s failed (%s); retrying in %.2fs", source, exc, wait_s)

    async def flush(self) -> None:
        """Push everything waiting now (used at shutdown and by tests)."""
        self._wakeup.set()
        self.start()
        await asyncio.sleep(0)
        while (self._buffer.releases or self._in_flight_events) and self.failure is None:
            self._wakeup.set()
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Push what waits, for at most ``close_timeout_s``; then give up (the unpushed batches are not
        released, so their offsets stay uncommitted and are read again)."""
        self._stopping = True
        self._space.set()
        self._wakeup.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.close_timeout_s)
            except TimeoutError:
                log.warning("Feast pushes still pending after %.1fs; stopping without them", self.close_timeout_s)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        # A push stuck in the Feast SDK cannot be interrupted: do not wait for its thread.
        self._executor.shutdown(wait=False, cancel_futures=True)
