"""Every use of faust-streaming beyond its public API, in one place, for the versions it was checked against.

The worker needs six things Faust does not expose publicly:

* **the current event** (``faust.streams._current_event``): a table write goes to the changelog partition of
  the task's current event; batches from ``take_events`` have none, so :func:`acting_as` binds one;
* **a changelog topic rebuilt** after the table's serializers change (``Table._new_changelog_topic``): Faust
  derives them from model types, and our values are plain dataclasses with their own codecs;
* **the consumer's offset bookkeeping** (``Consumer._committed_offset``, ``_acked``, ``_unacked_messages``):
  read by the offset-gap repair, the lag gauges and ``/debug/tasks`` (:class:`OffsetBook`);
* **codec hooks** (``Codec._dumps``/``_loads``): Faust's documented way to add a codec, wrapped by
  :func:`register_codec` so nothing else subclasses Faust's codec class;
* **the commit offset** (``Consumer._new_offset``): Faust commits past a partition's first unacknowledged
  message when it is the only one missing before the acknowledged run (its head check is off by one:
  faust-streaming#606), which loses that message for good when Faust dropped it after a rebalance;
  :func:`guard_commit_head` makes such a partition wait, so that :mod:`streams.offset_repair` re-reads it;
* **the read offsets** (``Consumer._read_offset``): the fetch loop drops a message below a partition's read
  offset and marks a jump above it as a gap (offsets taken as acknowledged). A seek while the loop is still
  handing over messages fetched before it (Faust's own seek to the committed offsets after a rebalance, or
  the offset repair's) has those stale messages move the read offset past the seek: the re-read is dropped,
  or the offsets in between are committed as a gap, and those messages are lost for good (the loss behind
  faust-streaming#596). :func:`guard_read_offsets` keeps the read offset of a partition that was sought at
  the seek's target until the re-read reaches it.

:func:`check_faust_version` runs at worker start (and when the app is built) and refuses a faust-streaming
outside :data:`TESTED_FAUST` with one precise line, instead of failing later in the middle of a rebalance.
When upgrading Faust: re-run ``tests/streams`` (the kill -9, recovery and offset-repair tests exercise each
of these), then widen the range.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from streamrec.errors import ConfigError

if TYPE_CHECKING:
    from faust.types import TP, EventT, TableT

#: faust-streaming releases whose internals (above) this module was checked against.
TESTED_FAUST = SpecifierSet(">=0.15.0,<0.16")
FAUST_DISTRIBUTION = "faust-streaming"


def check_faust_version(installed: str | None = None) -> str:
    """The installed faust-streaming version; :class:`ConfigError` when missing or outside :data:`TESTED_FAUST`."""
    if installed is None:
        try:
            installed = metadata.version(FAUST_DISTRIBUTION)
        except metadata.PackageNotFoundError:
            raise ConfigError(
                f"{FAUST_DISTRIBUTION} is not installed; the worker needs {FAUST_DISTRIBUTION}{TESTED_FAUST}",
                source=FAUST_DISTRIBUTION,
            ) from None
    try:
        version = Version(installed)
    except InvalidVersion:
        raise ConfigError(f"unparsable {FAUST_DISTRIBUTION} version {installed!r}", source=FAUST_DISTRIBUTION) from None
    if version not in TESTED_FAUST:
        raise ConfigError(
            f"{FAUST_DISTRIBUTION} {installed} is installed, but the worker relies on Faust internals checked only "
            f"with {FAUST_DISTRIBUTION}{TESTED_FAUST} (streams/faust_compat.py): install a version in that range",
            source=FAUST_DISTRIBUTION,
        )
    return installed


@contextmanager
def acting_as(event: EventT) -> Iterator[None]:
    """Make ``event`` Faust's current event for the duration of the block (task-local: a context variable)."""
    from faust import streams as faust_streams

    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def set_table_serializers(table: TableT, key_serializer: str, value_serializer: str) -> None:
    """Give ``table`` its own codecs, rebuilding its changelog topic so that recovery decodes with them too."""
    collection: Any = table  # faust.tables.base.Collection: TableT does not declare the serializers
    collection.key_serializer = key_serializer
    collection.value_serializer = value_serializer
    collection.changelog_topic = collection._new_changelog_topic()


def register_codec(name: str, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]) -> None:
    """Register a Faust codec ``name`` (usable as a table's ``value_serializer``) from two functions."""
    from faust.serializers import codecs

    class FunctionCodec(codecs.Codec):  # type: ignore[misc]
        def _dumps(self, obj: Any) -> bytes:
            return dumps(obj)

        def _loads(self, s: bytes) -> Any:
            return loads(s)

    codecs.register(name, FunctionCodec())


def guard_commit_head() -> None:
    """Never commit a partition past its committed offset while the message there is unacknowledged.

    Faust's ``_new_offset`` returns "nothing to commit" only when the first acknowledged offset is more
    than one past the committed one (the next offset to read), so one lost message at the head is
    committed over. Partitions with offsets Faust itself counts as skipped (its gap book: compaction,
    transaction markers) keep Faust's own rule. Idempotent."""
    from faust.transport.consumer import Consumer

    original = Consumer._new_offset
    if getattr(original, "_streamrec_guarded", False):
        return

    def _new_offset(self: Any, tp: TP) -> int | None:
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if acked and committed is not None and not self._gap[tp] and min(acked) > committed:
            return None
        result: int | None = original(self, tp)
        return result

    _new_offset._streamrec_guarded = True  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


class ReadOffsets(dict):  # type: ignore[type-arg]  # TP -> int | None, what Faust's defaultdict held
    """Faust's read offset per partition, unmoved by messages fetched before a seek.

    After a seek to ``start`` of a partition whose messages are acknowledged (a source, not a changelog),
    the partition reads as having no read offset -- every message is handed over, no gap is recorded --
    until the re-read reaches ``start``: the first message at ``start``, or below an offset handed over
    since the seek (the fetch went back). Messages handed over in between were fetched before the seek;
    they are processed once more (the processors are idempotent on re-reads) and move nothing.
    """

    def __init__(self, acks_enabled_for: Callable[[str], bool]) -> None:
        super().__init__()
        self._acks_enabled_for = acks_enabled_for
        self._sought: dict[Any, tuple[int, int]] = {}  # tp -> (start, highest offset handed over since)

    def __getitem__(self, tp: Any) -> int | None:
        if tp in self._sought:
            return None
        value: int | None = self.get(tp)
        return value

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        sought = self._sought.get(tp)
        if sought is not None and offset is not None:
            start, highest = sought
            if offset != start and offset >= highest:
                self._sought[tp] = (start, offset)  # fetched before the seek
                return
            del self._sought[tp]  # the re-read has begun
        super().__setitem__(tp, offset)

    def __delitem__(self, tp: Any) -> None:
        self._sought.pop(tp, None)
        super().__delitem__(tp)

    def pop(self, tp: Any, *default: Any) -> Any:
        self._sought.pop(tp, None)
        return super().pop(tp, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:  # Faust's seek to the committed offsets
        for tp, offset in dict(*args, **kwargs).items():
            self.sought(tp, offset)

    def sought(self, tp: Any, offset: int | None) -> None:
        """``tp`` was sought to ``offset`` (None: to where the consumer's reset policy starts)."""
        if offset is not None and self._acks_enabled_for(tp.topic):
            self._sought[tp] = (offset, -1)
        else:
            self._sought.pop(tp, None)
        super().__setitem__(tp, offset or None)


def guard_read_offsets() -> None:
    """Give every Faust consumer created from now on :class:`ReadOffsets`, and route ``seek`` through it.
    Idempotent."""
    from faust.transport.consumer import Consumer, ensure_TP

    original_init, original_seek = Consumer.__init__, Consumer.seek
    if getattr(original_init, "_streamrec_guarded", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._read_offset = ReadOffsets(lambda topic: bool(self.app.topics.acks_enabled_for(topic)))

    async def seek(self: Any, partition: TP, offset: int) -> None:
        await original_seek(self, partition, offset)
        reads = self._read_offset
        if isinstance(reads, ReadOffsets):
            reads.sought(ensure_TP(partition), offset)

    __init__._streamrec_guarded = True  # type: ignore[attr-defined]
    Consumer.__init__ = __init__  # type: ignore[method-assign]
    Consumer.seek = seek  # type: ignore[method-assign]


@dataclass(frozen=True)
class InFlight:
    """A message taken from the consumer and not yet acknowledged."""

    tp: TP
    offset: int
    refcount: int


class OffsetBook:
    """Read-only view of a Faust consumer's offset bookkeeping (copies: the consumer mutates its own)."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def committed(self) -> dict[TP, int | None]:
        """Per partition, the next offset to read after the last commit (None: nothing committed yet)."""
        return dict(self.consumer._committed_offset)

    def acked(self, topics: set[str] | None = None) -> dict[TP, list[int]]:
        """Acknowledged offsets not yet covered by a commit, per partition."""
        book: Mapping[TP, list[int]] = self.consumer._acked
        return {tp: list(offsets) for tp, offsets in list(book.items()) if topics is None or tp.topic in topics}

    def in_flight(self, topics: set[str] | None = None) -> list[InFlight]:
        """Messages handed to a stream and not yet acknowledged."""
        return [
            InFlight(m.tp, m.offset, m.refcount)
            for m in list(self.consumer._unacked_messages)
            if topics is None or m.tp.topic in topics
        ]
