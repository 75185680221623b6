"""The one module that touches Faust internals: version gate, current event, changelog codecs, offset book."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from streamrec.errors import ConfigError
from streams.faust_compat import (
    TESTED_FAUST,
    OffsetBook,
    acting_as,
    check_faust_version,
    guard_commit_head,
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
