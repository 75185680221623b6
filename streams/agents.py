"""The worker's two Faust agents: batches of events in, :mod:`streams.processors` do the work.

* **Batching**: ``stream.take_events(n, within)`` hands over a batch of events (``take()`` would give
  values only, and table writes need the event: see :func:`streams.faust_compat.acting_as`).
* **Holding offsets**: each event's message gets one extra reference (:func:`hold`) before any await.
  ``take_events`` drops its own reference when the loop body returns -- or is cancelled, or raises -- but
  the offset only becomes committable when :func:`release` drops ours, which the processors do after
  every side effect of the batch is durable (Bloom write done, feature rows pushed). A crash or
  shutdown in between leaves the offsets uncommitted, and the batch is read again (idempotently).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from streams.processors import Incoming, Release

if TYPE_CHECKING:
    from faust.types import AppT, EventT, StreamT

    from streams.interfaces import ProcessorOf, WorkerRuntime, WorkerTopics
    from streams.settings import StreamsSettings

log = logging.getLogger(__name__)

#: Table writes queue changelog messages; Faust pauses the stream when more than ``max_messages`` wait
#: (default 100, less than one batch of distinct users). Allow this many batches' worth.
PRODUCER_BUFFER_BATCHES = 4


def hold(events: Sequence[EventT]) -> None:
    for event in events:
        event.message.incref()


def release(events: Sequence[EventT]) -> Release:
    def _release() -> None:
        for event in events:
            event.ack()

    return _release


#: Kafka's timestamp type of a record stamped by the broker on append (0: the producer's CreateTime).
LOG_APPEND_TIME = 1


def to_incoming(event: EventT) -> Incoming:
    msg = event.message
    timestamp_ms = round(msg.timestamp * 1000) if msg.timestamp is not None else None  # Faust: seconds
    return Incoming(
        event.key, event.value, msg.partition, msg.offset, event, timestamp_ms, msg.timestamp_type == LOG_APPEND_TIME
    )


async def run_batches(
    app: AppT, stream: StreamT, runtime: WorkerRuntime, processor_of: ProcessorOf, settings: StreamsSettings
) -> None:
    """Feed ``stream`` to the processor in batches until the stream ends; a processing error stops the worker."""
    await runtime.start()
    processor = processor_of()
    if processor is None:
        raise RuntimeError("the worker runtime started without its processors")
    buffer: Any = app.producer.buffer
    buffer.max_messages = max(buffer.max_messages, PRODUCER_BUFFER_BATCHES * settings.batch_max_events)
    batches: Any = stream  # faust.Stream: StreamT does not declare take_events
    async for events in batches.take_events(settings.batch_max_events, settings.batch_within_ms / 1000.0):
        hold(events)
        try:
            await processor.process([to_incoming(e) for e in events], release(events))
        except asyncio.CancelledError:
            raise  # shutdown: the held offsets stay uncommitted and are read again
        except Exception as exc:
            # A bug, not bad input (bad input goes to the DLQ). Stop the worker: its uncommitted batch
            # is read again after the restart, and a crash loop is louder than a silent skip.
            log.exception("batch processing failed; stopping the worker")
            await app.crash(exc)
            return


def register_agents(app: AppT, topics: WorkerTopics, runtime: WorkerRuntime, settings: StreamsSettings) -> None:
    """The interactions agent (source topic) and the items agent (by-item topic)."""

    def agent(topic: Any, name: str, processor_of: Callable[[], Any]) -> None:
        async def consume(stream: StreamT) -> None:
            await run_batches(app, stream, runtime, processor_of, settings)

        app.agent(topic, name=f"{settings.app_id}.{name}")(consume)

    agent(topics.interactions, "interactions", lambda: runtime.interactions)
    agent(topics.by_item, "items", lambda: runtime.items)
