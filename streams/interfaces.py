"""What the worker's Faust wiring hands to its parts: configuration, topics, tables, processors, runtime.

Interfaces only (faust's own ``types/`` layout): :mod:`streams.app` builds the objects, :mod:`streams.agents`,
:mod:`streams.timers` and :mod:`streams.views` use them. Faust types are imported for type checking only, so
importing this module does not import Faust.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from streamrec.settings import BloomSettings, KafkaSettings, RedisSettings
from streams.catalog import Catalog
from streams.processors import Incoming, Release
from streams.pusher import PushFn
from streams.settings import StreamsSettings

if TYPE_CHECKING:
    from faust.types import TableT, TopicT


@dataclass
class WorkerConfig:
    """Everything the worker needs, resolved before the app is built (:func:`streams.worker.build_config`)."""

    streams: StreamsSettings
    kafka: KafkaSettings
    redis: RedisSettings
    bloom: BloomSettings
    partitions: int  # of the interactions topic (tables and the by-item topic are co-partitioned with it)
    catalog: Catalog
    push: PushFn | None  # None: Feast disabled


@dataclass(frozen=True)
class WorkerTopics:
    interactions: TopicT  # source, keyed by user id
    by_item: TopicT  # internal: de-duplicated events re-keyed by item id
    dlq: TopicT
    recommendations: TopicT

    @property
    def consumed(self) -> list[str]:
        """Names of the topics the agents read (their offsets are what the timers watch)."""
        return [self.interactions.get_topic_name(), self.by_item.get_topic_name()]


@dataclass(frozen=True)
class WorkerTables:
    users: TableT  # user id -> streams.state.UserState
    items: TableT  # item id -> streams.state.ItemState


class BatchProcessor(Protocol):
    """One of :mod:`streams.processors`: takes a batch; calls ``release`` once its effects are durable."""

    async def process(self, batch: Sequence[Incoming], release: Release) -> None: ...


class WorkerRuntime(Protocol):
    """Resources the agents need, created lazily on the worker's event loop."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def interactions(self) -> BatchProcessor | None: ...

    @property
    def items(self) -> BatchProcessor | None: ...


#: Picks the processor of an agent once the runtime has started (``runtime.interactions``, ``runtime.items``).
ProcessorOf = Callable[[], BatchProcessor | None]

#: ``app.crash``: stops the worker (a bug, not bad input).
Crash = Callable[[BaseException], Awaitable[None]]
