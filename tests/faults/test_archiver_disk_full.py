"""The archiver's disk fills up (a small tmpfs): no partial file, no offset committed, a clear error, and
once space returns every event is archived exactly once."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from streamrec.archive import INTERACTIONS_DIR, read_interactions
from streamrec.client import InteractionProducer
from streamrec.schemas.events import InteractionEvent
from tests.conftest import StackHandle
from tests.faults.conftest import archiver_env, run_archiver

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
PARTITIONS = 3


def can_mount_tmpfs() -> bool:
    probe = Path("/tmp") / f"streamrec-tmpfs-probe-{uuid.uuid4().hex[:8]}"
    probe.mkdir()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
        if ok.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    except OSError:
        return False
    finally:
        probe.rmdir()


@pytest.fixture
def small_disk(fault_run_dir: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test only."""
    if not can_mount_tmpfs():
        pytest.skip("mount -t tmpfs is not allowed here (needs root or CAP_SYS_ADMIN)")
    mount = fault_run_dir / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave_bytes: int) -> Path:
    """Write a filler file until the filesystem is full, then give ``leave_bytes`` back (so that a write
    fails part-way, not when it creates its file)."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    os.truncate(filler, filler.stat().st_size - leave_bytes)
    free = os.statvfs(mount)
    assert free.f_bavail * free.f_frsize <= leave_bytes + 4096, "the filesystem is not full"
    return filler


def committed(stack: StackHandle, topic: str, group: str) -> dict[int, int]:
    consumer = Consumer({**stack.kafka.client_config(), "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in parts}


def produce(stack: StackHandle, topic: str, n: int, tag: str) -> list[InteractionEvent]:
    events = [
        InteractionEvent.new(f"{tag}-u{k % 23}", f"i{k % 40}", "view", timestamp=T0 + timedelta(seconds=k))
        for k in range(n)
    ]
    with InteractionProducer(stack.kafka, topic=topic) as producer:
        producer.send_many(events)
    return events


def hidden_files(root: Path) -> list[Path]:
    return sorted((root / INTERACTIONS_DIR).glob("date=*/.*"))


def starve(stack: StackHandle, unique_topics, small_disk: Path, n: int) -> tuple[dict, list[InteractionEvent], str]:
    """The archiver writes onto a full disk; returns its env, the events and its output once it gave up."""
    topic, dlq = unique_topics("full", PARTITIONS), unique_topics("fulldlq", 1)
    root = small_disk / "archive"
    root.mkdir()
    # One roll of all events: a Parquet file of some 20 KB, larger than the space left.
    env = archiver_env(
        root,
        topic,
        dlq,
        f"archiver-full-{uuid.uuid4().hex[:8]}",
        STREAMREC_CONSUMERS_ROLL_MAX_ROWS=str(n),
        STREAMREC_CONSUMERS_ROLL_MAX_AGE_S="3",
    )
    events = produce(stack, topic, n, f"full{uuid.uuid4().hex[:6]}")
    fill(small_disk, leave_bytes=8192)
    proc = run_archiver(env)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        raise AssertionError(
            f"the archiver neither failed nor archived on a full disk:\n{out.decode(errors='replace')[-2000:]}"
        ) from None
    text = out.decode(errors="replace")
    assert proc.returncode != 0, text[-2000:]
    print(f"archiver exit code {proc.returncode}; last lines:\n" + "\n".join(text.splitlines()[-3:]))
    return env, events, text


@pytest.mark.timeout(180)
def test_disk_full_writes_no_partial_file_commits_nothing_and_resumes(
    stack: StackHandle, unique_topics, small_disk: Path
) -> None:
    env, events, text = starve(stack, unique_topics, small_disk, 1500)
    root = Path(env["STREAMREC_PATHS_ARCHIVE_ROOT"])
    group, topic = env["STREAMREC_CONSUMERS_ARCHIVER_GROUP"], env["STREAMREC_CONSUMERS_ARCHIVER_TOPIC"]
    assert "No space left on device" in text or errno.errorcode[errno.ENOSPC] in text, text[-2000:]
    # Nothing was durably written, so nothing may be committed.
    assert all(offset < 0 for offset in committed(stack, topic, group).values())
    assert list((root / INTERACTIONS_DIR).glob("date=*/*.parquet")) == []
    assert hidden_files(root) == [], f"a partial temporary file stays on the full disk: {hidden_files(root)}"

    (small_disk / "filler").unlink()  # space returns
    proc = run_archiver(env, "--idle-exit", "3")
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    files = list((root / INTERACTIONS_DIR).glob("date=*/*.parquet"))
    for file in files:
        pq.read_table(file)
    archived = read_interactions(root)
    assert len(archived) == len(events)
    assert sorted(archived["event_id"]) == sorted(e.event_id for e in events)
    offsets = committed(stack, topic, group)
    assert sum(offsets.values()) == len(events), offsets


@pytest.mark.timeout(120)
def test_disk_full_ends_in_one_clear_line_naming_the_archive(
    stack: StackHandle, unique_topics, small_disk: Path
) -> None:
    env, _, text = starve(stack, unique_topics, small_disk, 300)
    assert "Traceback" not in text, text[-2000:]
    last = [line for line in text.splitlines() if line.strip()][-1]
    assert "No space left on device" in last and env["STREAMREC_PATHS_ARCHIVE_ROOT"] in last, last
