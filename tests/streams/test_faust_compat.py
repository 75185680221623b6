"""The one module that touches Faust internals: version gate, current event, changelog codecs, offset book."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from streamrec.errors import ConfigError
from streams.faust_compat import (
    TESTED_FAUST,
    OffsetBook,
    acting_as,
    check_faust_version,
    guard_commit_head,
    guard_read_offsets,
    register_codec,
    set_table_serializers,
)


@pytest.fixture(scope="module")
def app() -> Iterator[Any]:
    import faust

    # Never started: nothing connects to this broker address.
    yield faust.App("faust-compat-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)


def test_the_installed_faust_is_in_the_tested_range() -> None:
    from importlib.metadata import version

    assert check_faust_version() == version("faust-streaming")
    assert check_faust_version("0.15.3") == "0.15.3"


@pytest.mark.parametrize("installed", ["0.14.9", "0.16.0", "1.0.0"])
def test_a_faust_outside_the_tested_range_is_refused_with_the_range(installed: str) -> None:
    with pytest.raises(ConfigError, match=rf"faust-streaming {installed} is installed.*{TESTED_FAUST}"):
        check_faust_version(installed)


def test_an_unparsable_faust_version_is_refused() -> None:
    with pytest.raises(ConfigError, match="unparsable faust-streaming version 'banana'"):
        check_faust_version("banana")


class Event:
    """Stands for a faust Event: only weak-referenced by the current-event variable."""


def test_acting_as_makes_the_event_fausts_current_event_for_the_block_only() -> None:
    import faust

    event = Event()
    assert faust.current_event() is None
    with acting_as(event):  # type: ignore[arg-type]
        assert faust.current_event() is event
    assert faust.current_event() is None


def test_table_codecs_reach_its_changelog_topic(app: Any) -> None:
    register_codec("faust-compat-test-codec", lambda obj: obj.upper().encode(), lambda raw: raw.decode().lower())
    table = app.Table("compat", partitions=2)
    name = table.changelog_topic.get_topic_name()
    assert table.changelog_topic.value_serializer == "json"  # what Faust derives without a model type
    set_table_serializers(table, "raw", "faust-compat-test-codec")
    topic = table.changelog_topic
    assert (topic.get_topic_name(), topic.key_serializer, topic.value_serializer, topic.partitions) == (
        name,
        "raw",
        "faust-compat-test-codec",
        2,
    )
    from faust.serializers import codecs

    assert codecs.dumps("faust-compat-test-codec", "abc") == b"ABC"
    assert codecs.loads("faust-compat-test-codec", b"ABC") == "abc"


def test_offset_book_reads_a_real_faust_consumer(app: Any) -> None:
    from faust.types import TP
    from faust.types.tuples import Message

    book = OffsetBook(app.consumer)
    assert book.committed() == {} and book.acked() == {} and book.in_flight() == []
    message = Message("compat-in", 3, 41, 0.0, 0, None, b"k", b"v", None)
    app.consumer.track_message(message)
    message.incref()
    [in_flight] = book.in_flight({"compat-in"})
    assert (in_flight.tp, in_flight.offset, in_flight.refcount) == (TP("compat-in", 3), 41, 1)
    assert book.in_flight({"other"}) == []


def test_a_lost_head_message_holds_the_commit_and_a_complete_run_commits(app: Any) -> None:
    from faust.types import TP

    guard_commit_head()
    guard_commit_head()  # idempotent
    consumer, tp = app.consumer, TP("compat-commit", 0)
    consumer._committed_offset[tp] = 10  # the next offset to read
    consumer._acked[tp].extend([11, 12, 13])  # 10 was never acknowledged: lost or still in flight
    assert consumer._new_offset(tp) is None
    consumer._acked[tp].insert(0, 10)
    assert consumer._new_offset(tp) == 14


async def drain_with_a_seek_during_the_fetch(seek_while: str) -> tuple[list[int], list[Any]]:
    """Faust's own fetch loop (``Consumer._drain_messages``) over two fetches of one partition whose offsets
    80..201 were lost (the read offset stands at 201, 80 is committed): the first fetch hands over 202..210,
    and while it does, the partition is sought back to 80; the second fetch then returns 80..210.

    ``seek_while``: "handing over" seeks while a message is in the stream's hands; "between" seeks between
    two messages. Returns the offsets handed to the stream and the partition's gap (offsets Faust takes as
    acknowledged without a message)."""
    import faust
    from faust.types import TP
    from faust.types.tuples import Message

    # Made on the running loop: the consumer's events belong to the loop that creates them.
    app = faust.App("faust-compat-drain", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    consumer: Any = app.consumer
    tp = TP("compat-drain", 0)
    app.topics.acks_enabled_for = lambda topic: True  # type: ignore[method-assign]  # a source topic

    async def broker_seek(partition: Any, offset: int) -> None:
        await asyncio.sleep(0)

    consumer._seek = broker_seek
    consumer._committed_offset[tp] = 80
    consumer._read_offset[tp] = 201
    fetches = [list(range(202, 211)), list(range(80, 211))]

    class Fetcher:
        def __init__(self) -> None:
            self._stopped = threading.Event()

    fetcher = Fetcher()

    async def getmany(timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        if not fetches:
            fetcher._stopped.set()
            return
        for offset in fetches.pop(0):
            await asyncio.sleep(0.02 if offset == 206 else 0)  # room for a seek between 205 and 206
            yield tp, Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None)

    handed: list[int] = []

    async def later_seek() -> None:
        await asyncio.sleep(0.005)
        await consumer.seek(tp, 80)

    async def callback(message: Any) -> None:
        handed.append(message.offset)
        if message.offset == 205 and len(handed) == 4:
            if seek_while == "handing over":
                await consumer.seek(tp, 80)
            else:
                asyncio.get_running_loop().create_task(later_seek())

    consumer.getmany = getmany
    consumer.callback = callback
    await consumer._drain_messages(fetcher)
    return handed, list(consumer._gap[tp])


@pytest.mark.parametrize("seek_while", ["handing over", "between"])
def test_a_seek_during_a_fetch_re_reads_what_was_lost_and_marks_no_gap(seek_while: str) -> None:
    guard_read_offsets()
    guard_read_offsets()  # idempotent
    handed, gap = asyncio.run(drain_with_a_seek_during_the_fetch(seek_while))
    assert handed[:9] == list(range(202, 211))  # fetched before the seek: handed over, moving nothing
    assert handed[9:] == list(range(80, 211))  # the re-read from the seek's offset, nothing dropped
    assert gap == []


def test_read_offsets_after_a_seek_follow_the_re_read_and_leave_changelogs_alone() -> None:
    from faust.types import TP

    from streams.faust_compat import ReadOffsets

    source, changelog = TP("in", 0), TP("app-users-changelog", 0)
    reads = ReadOffsets(lambda topic: not topic.endswith("-changelog"))
    reads.update({source: 80, changelog: 7})  # what Faust's seek to the committed offsets does
    assert (reads[source], reads[changelog]) == (None, 7)  # the source hands over anything until the re-read
    reads[source] = 300  # fetched before the seek
    assert reads[source] is None
    reads[source] = 80  # the re-read begins
    assert reads[source] == 80
    reads.sought(source, 50)
    reads[source] = 60
    reads[source] = 55  # went back: the re-read begins (50 itself was, say, a transaction marker)
    assert reads[source] == 55
    assert reads.pop(source) == 55 and reads[source] is None
