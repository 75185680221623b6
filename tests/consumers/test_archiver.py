"""The archiver: exactly-once output after read dedupe, durable files only, kill -9 safe; the example client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from consumers.archiver import Buffer, RollPolicy, file_stem, remove_stale_temporaries
from consumers.recs_client import LatestRecommendations, describe, follow
from streamrec.archive import INTERACTIONS_DIR, read_interactions
from streamrec.client import InteractionProducer, RecommendationConsumer
from streamrec.client.producer import producer_config
from streamrec.client.validating import ConsumedEvent
from streamrec.schemas.events import InteractionEvent, RecommendationMessage, RecommendedItem
from tests.conftest import StackHandle

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


def test_roll_policy_rolls_on_rows_size_or_age_and_never_when_empty() -> None:
    policy = RollPolicy(max_rows=10, max_bytes=1000, max_age_s=5.0)
    assert not policy.due(0, 10_000, 100.0)
    assert policy.due(10, 0, 0.0) and policy.due(1, 1000, 0.0) and policy.due(1, 0, 5.0)
    assert not policy.due(9, 999, 4.9)


def test_buffer_tracks_size_and_the_age_of_its_oldest_event() -> None:
    buf = Buffer()
    assert buf.age(100.0) == 0.0
    events = [ConsumedEvent(InteractionEvent.new("u", f"i{n}", "view"), 0, n) for n in range(3)]
    buf.add(events[:2], now=10.0)
    buf.add(events[2:], now=12.0)
    assert len(buf.events) == 3 and buf.age(15.0) == 5.0
    assert buf.size == sum(120 + len("u") + len(e.event.item_id) + len("default") for e in events)


def test_file_stems_are_unique_and_temporaries_are_removed_only_when_stale(tmp_path: Path) -> None:
    assert len({file_stem("g") for _ in range(100)}) == 100
    part = tmp_path / INTERACTIONS_DIR / "date=2026-11-28"
    part.mkdir(parents=True)
    old, fresh = part / ".a.parquet.1.tmp", part / ".b.parquet.2.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries(tmp_path) == 1
    assert not old.exists() and fresh.exists()


def rec(user: str, items: list[str], at: datetime) -> RecommendationMessage:
    return RecommendationMessage(
        user_id=user,
        items=[RecommendedItem(item_id=i, score=1.0 / (n + 1), rank=n + 1) for n, i in enumerate(items)],
        model_version="v1",
        generated_at=at,
    )


def test_latest_recommendations_never_go_back_in_time() -> None:
    cache = LatestRecommendations()
    assert cache.offer(rec("u", ["a"], T0))
    assert not cache.offer(rec("u", ["old"], T0 - timedelta(seconds=1)))
    assert cache.offer(rec("u", ["b", "c"], T0 + timedelta(seconds=1)))
    assert cache.items("u") == ["b", "c"] and cache.items("nobody") == []
    assert describe(rec("u", ["b"], T0), now=T0 + timedelta(milliseconds=250)) == "u: b (v1, 250 ms old)"


def run_archiver(stack: StackHandle, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamrec.cli.main", "archive", *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def parquet_files(root: Path) -> list[Path]:
    return sorted((root / INTERACTIONS_DIR).glob("date=*/*.parquet"))


@pytest.mark.slow
def test_archiver_output_equals_the_events_exactly_once_across_kill_9(
    stack: StackHandle, unique_topics, tmp_path: Path
) -> None:
    topic, dlq = unique_topics("arch", 3), unique_topics("archdlq", 1)
    root = tmp_path / "archive"
    env = {
        "STREAMREC_PATHS_ARCHIVE_ROOT": str(root),
        "STREAMREC_CONSUMERS_ARCHIVER_TOPIC": topic,
        "STREAMREC_CONSUMERS_ARCHIVER_GROUP": f"archiver-{uuid.uuid4().hex[:8]}",
        "STREAMREC_KAFKA_DLQ_TOPIC": dlq,
        "STREAMREC_CONSUMERS_ROLL_MAX_ROWS": "300",
        "STREAMREC_CONSUMERS_ROLL_MAX_AGE_S": "0.5",
        "STREAMREC_CONSUMERS_ARCHIVER_METRICS_PORT": "0",
        "STREAMREC_LOG_FORMAT": "json",
    }
    # Events across a date boundary, so files land in two partitions.
    events = [
        InteractionEvent.new(f"a-u{n % 17}", f"i{n % 50}", "view", timestamp=T0 + timedelta(seconds=4 * n))
        for n in range(3000)
    ]
    first = run_archiver(stack, env)
    with InteractionProducer(stack.kafka, topic=topic) as producer:
        for n, event in enumerate(events):
            producer.send(event)
            if n % 200 == 0:
                producer.send(events[n // 2])  # an at-least-once producer resending: same event id
                time.sleep(0.05)
        producer.send_raw(b"k", b"not json")
    deadline = time.monotonic() + 60
    while len(parquet_files(root)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # mid-stream: buffered events not yet written, offsets not committed
    first.wait(10)
    second = run_archiver(stack, env, "--idle-exit", "3")
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out.decode(errors="replace")[-2000:]
    # INFO lines reach the output, one JSON object each, naming the component.
    logged = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert logged and all(line["component"] == "archive" for line in logged)
    assert any(line["level"] == "info" and line["message"].startswith(f"archiving {topic} ") for line in logged)

    files = parquet_files(root)
    assert {f.parent.name for f in files} == {"date=2026-11-27", "date=2026-11-28"}
    for file in files:
        pq.read_table(file)  # complete files only: each one reads
    raw = sum(pq.read_metadata(f).num_rows for f in files)
    archived = read_interactions(root)
    assert raw >= len(events) and len(archived) == len(events)
    assert sorted(archived["event_id"]) == sorted(e.event_id for e in events)
    by_id = archived.set_index("event_id")
    for event in events[::97]:
        row = by_id.loc[event.event_id]
        assert (row["user_id"], row["item_id"], row["timestamp"].to_pydatetime()) == (
            event.user_id,
            event.item_id,
            event.timestamp,
        )


def test_recs_client_follows_the_topic(stack: StackHandle, unique_topics) -> None:
    from confluent_kafka import Producer

    topic = unique_topics("recsclient", 2)
    producer = Producer(producer_config(stack.kafka))
    messages = [rec(f"c-u{n % 3}", [f"i{n}"], T0 + timedelta(seconds=n)) for n in range(9)]
    for message in messages:
        producer.produce(topic, key=message.user_id.encode(), value=message.model_dump_json().encode())
    producer.flush(10)
    cache = LatestRecommendations()
    changes: list[str] = []
    deadline = time.monotonic() + 30
    with RecommendationConsumer(stack.kafka, topic=topic, from_beginning=True) as consumer:
        follow(
            consumer,
            cache,
            lambda m: changes.append(m.user_id),
            lambda: len(changes) >= 9 or time.monotonic() > deadline,
        )
    assert len(changes) == 9
    assert {u: cache.items(u) for u in cache.by_user} == {"c-u0": ["i6"], "c-u1": ["i7"], "c-u2": ["i8"]}
