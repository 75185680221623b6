"""The Parquet event archive and the replay encoding built on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from streamrec.archive import events_to_frame, partition_dates, read_interactions, write_interactions
from streamrec.cli.events_cmd import archive_messages, retime
from streamrec.errors import DataError
from streamrec.schemas import InteractionEvent, decode_interaction

T0 = datetime(2026, 11, 27, 23, 59, 0, tzinfo=UTC)


def sample_events(n: int = 6) -> list[InteractionEvent]:
    return [
        InteractionEvent.new(f"u{i % 2}", f"i{i}", "view", timestamp=T0 + timedelta(seconds=30 * i), locale="en-US")
        for i in range(n)
    ]


def test_events_are_partitioned_by_utc_date_and_read_back_in_time_order(tmp_path: Path) -> None:
    events = sample_events()
    written = write_interactions(events_to_frame(reversed(events)), tmp_path, "part-0")
    assert [p.parent.name for p in written] == ["date=2026-11-27", "date=2026-11-28"]
    assert [d.isoformat() for d in partition_dates(tmp_path)] == ["2026-11-27", "2026-11-28"]
    frame = read_interactions(tmp_path)
    assert list(frame["event_id"]) == [e.event_id for e in events]
    assert str(frame["timestamp"].dt.tz) == "UTC"
    only_first_day = read_interactions(tmp_path, end=T0.date())
    assert len(only_first_day) == 2


def test_duplicates_from_at_least_once_delivery_are_removed_on_read(tmp_path: Path) -> None:
    events = sample_events()
    write_interactions(events_to_frame(events), tmp_path, "part-0")
    write_interactions(events_to_frame(events[2:4]), tmp_path, "part-1")  # redelivered batch
    assert len(read_interactions(tmp_path)) == len(events)
    assert len(read_interactions(tmp_path, dedupe=False)) == len(events) + 2


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    write_interactions(events_to_frame(sample_events()), tmp_path, "part-0")
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_empty_and_corrupt_archives_raise_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no archived interactions"):
        read_interactions(tmp_path)
    bad = tmp_path / "interactions" / "date=2026-11-28" / "x.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="corrupt archive file"):
        read_interactions(tmp_path)


def test_replay_encoding_is_the_wire_contract_and_keys_by_user() -> None:
    events = sample_events()
    messages = list(archive_messages(events_to_frame(events)))
    for (key, value, ts_ms), original in zip(messages, events, strict=True):
        decoded = decode_interaction(value)
        assert decoded == original
        assert key == original.user_id.encode() and ts_ms == original.epoch_ms


def test_retime_keeps_order_and_scales_gaps() -> None:
    frame = events_to_frame(sample_events())
    start = datetime(2030, 1, 1, tzinfo=UTC)
    fast = retime(frame, 10.0, start)
    assert fast["timestamp"].iloc[0] == pd.Timestamp(start)
    assert (fast["timestamp"].diff().dropna() == pd.Timedelta(seconds=3)).all()
    packed = retime(frame, None, start)
    assert packed["timestamp"].is_monotonic_increasing
    assert packed["timestamp"].iloc[-1] == pd.Timestamp(start)  # nothing in the future of the replay
    assert (packed["timestamp"].diff().dropna() == pd.Timedelta(milliseconds=1)).all()
