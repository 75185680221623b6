"""The interactions processor against in-memory ports: skew policy, key checks, dead letters, store failures."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from streamrec.client.dlq import parse_dead_letter
from streamrec.retry import PermanentStoreError
from streamrec.schemas.events import InteractionEvent
from streams.batch import decode_bundle
from streams.metrics import WorkerMetrics
from streams.processors import Incoming, InteractionsProcessor
from streams.pusher import MicroBatchPusher
from streams.recs import Trigger
from streams.state import DedupeLimits, UserState

APPEND = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)  # far from the test machine's clock on purpose


class MemoryTable:
    def __init__(self) -> None:
        self.data: dict[str, UserState] = {}

    def get(self, key: str) -> UserState | None:
        return self.data.get(key)

    def put(self, key: str, value: UserState, handle: Any) -> None:
        self.data[key] = value

    async def durable(self) -> None:
        return None


class Sent:
    """A topic sender; refuses values above ``max_bytes`` the way the Kafka producer does."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.messages: list[tuple[bytes | None, bytes]] = []

    async def __call__(self, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        if len(value) + len(key or b"") > self.max_bytes:
            raise MessageSizeTooLargeError()
        self.messages.append((key, value))


class Bloom:
    def __init__(self, failures: Sequence[BaseException] = ()) -> None:
        self.failures = list(failures)
        self.added: dict[str, list[str]] = {}

    async def add(self, items_by_user: Mapping[str, Sequence[str]]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        for user, items in items_by_user.items():
            self.added.setdefault(user, []).extend(items)


class Triggers:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Trigger]] = []

    def notify_many(self, triggers: Sequence[tuple[str, Trigger]]) -> None:
        self.seen.extend(triggers)


def processor(bloom: Bloom | None = None, dlq: Sent | None = None, skew_s: float = 300.0) -> InteractionsProcessor:
    return InteractionsProcessor(
        topic="interactions",
        users=MemoryTable(),
        dlq=dlq or Sent(),
        forward=Sent(),
        bloom=bloom or Bloom(),
        metrics=WorkerMetrics(),
        category_of=lambda item: "c",
        limits=DedupeLimits(),
        by_item_partitions=3,
        refresher=Triggers(),
        max_future_skew_s=skew_s,
        max_backoff_s=0.05,
    )


def message(event: InteractionEvent, offset: int, key: bytes | None = None, appended: datetime = APPEND) -> Incoming:
    return Incoming(
        event.user_id.encode() if key is None else key,
        event.to_json_bytes(),
        0,
        offset,
        None,
        int(appended.timestamp() * 1000),
        True,
    )


def run(proc: InteractionsProcessor, batch: list[Incoming]) -> list[bool]:
    released: list[bool] = []
    asyncio.run(asyncio.wait_for(proc.process(batch, lambda: released.append(True)), 10))
    return released


def dead_letters(proc: InteractionsProcessor) -> list[Any]:
    sent: Any = proc.dlq
    return [parse_dead_letter(value) for _, value in sent.messages]


def test_events_further_ahead_of_the_broker_append_time_than_the_skew_go_to_the_dlq() -> None:
    proc = processor(skew_s=300)
    ahead = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND + timedelta(seconds=301))
    within = InteractionEvent.new("u1", "i2", "view", timestamp=APPEND + timedelta(seconds=299))
    assert run(proc, [message(ahead, 0), message(within, 1)]) == [True]
    (letter,) = dead_letters(proc)
    assert (letter.reason_code, letter.field, letter.source_offset) == ("future_timestamp", "timestamp", 0)
    assert "300 s in the future" in letter.reason
    users: Any = proc.users
    assert users.data["u1"].last_ms == within.epoch_ms
    assert proc.metrics.events_invalid.labels("future_timestamp")._value.get() == 1


def test_the_skew_limit_is_the_setting() -> None:
    proc = processor(skew_s=60)
    event = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND + timedelta(seconds=120))
    run(proc, [message(event, 0)])
    assert [d.reason_code for d in dead_letters(proc)] == ["future_timestamp"]


def test_a_late_event_is_counted_without_moving_the_users_newer_state() -> None:
    proc = processor()
    newer = InteractionEvent.new("u1", "i1", "click", timestamp=APPEND)
    late = InteractionEvent.new("u1", "i2", "click", timestamp=APPEND - timedelta(hours=3))
    run(proc, [message(newer, 0)])
    run(proc, [message(late, 1)])
    users: Any = proc.users
    state = users.data["u1"]
    assert state.last_ms == newer.epoch_ms and state.counted == 2
    assert [item for _, item in state.recent] == ["i2", "i1"], "ordered by event time, newest last"
    assert not dead_letters(proc)


@pytest.mark.parametrize(("key", "code"), [(b"", "key_missing"), (b"someone-else", "key_mismatch")])
def test_a_message_whose_key_is_not_its_user_goes_to_the_dlq(key: bytes, code: str) -> None:
    proc = processor()
    event = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND)
    run(proc, [message(event, 0, key=key)])
    assert [(d.reason_code, d.field) for d in dead_letters(proc)] == [(code, "<key>")]
    users: Any = proc.users
    assert "u1" not in users.data


def test_one_event_id_reused_by_two_users_keeps_each_users_own_context() -> None:
    proc = processor()
    shared = str(uuid.uuid4())
    a = InteractionEvent.new("ua", "i1", "view", timestamp=APPEND, event_id=shared, session_id="session-a")
    b = InteractionEvent.new("ub", "i1", "view", timestamp=APPEND, event_id=shared, session_id="session-b")
    run(proc, [message(a, 0), message(b, 1)])
    refresher: Any = proc.refresher
    assert {user: t.context.session_id for user, t in refresher.seen} == {"ua": "session-a", "ub": "session-b"}


def test_an_oversized_message_gets_a_truncated_dead_letter_and_the_batch_goes_on() -> None:
    # The producer here refuses anything above 100 kB: the full-size record cannot go, the smallest one can.
    proc = processor(dlq=Sent(max_bytes=100_000))
    huge = b'{"pad":"' + b"x" * 900_000 + b'"}'
    good = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND)
    batch = [Incoming(b"u1", huge, 0, 0, None, int(APPEND.timestamp() * 1000), True), message(good, 1)]
    assert run(proc, batch) == [True]
    (letter,) = dead_letters(proc)
    assert letter.reason_code == "too_large" and letter.truncated
    assert letter.original_value_bytes == len(huge)
    assert letter.original_value_sha256 == hashlib.sha256(huge).hexdigest()
    assert huge.startswith(letter.original_value())
    bloom: Any = proc.bloom
    assert bloom.added == {"u1": ["i1"]}


def test_a_permanent_redis_error_fails_the_batch_at_once_and_releases_nothing() -> None:
    proc = processor(bloom=Bloom([ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")]))
    event = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND)
    released: list[bool] = []
    with pytest.raises(PermanentStoreError, match="redis write failed permanently.*WRONGTYPE"):
        asyncio.run(asyncio.wait_for(proc.process([message(event, 0)], lambda: released.append(True)), 10))
    assert released == []


def test_a_transient_redis_error_is_retried_until_the_write_succeeds() -> None:
    bloom = Bloom([RedisConnectionError("Connection refused"), RedisConnectionError("Connection refused")])
    proc = processor(bloom=bloom)
    event = InteractionEvent.new("u1", "i1", "view", timestamp=APPEND)
    assert run(proc, [message(event, 0)]) == [True]
    assert bloom.added == {"u1": ["i1"]}
    assert proc.metrics.store_errors.labels("redis")._value.get() == 2


def test_a_permanent_feast_error_stops_the_pusher_and_the_next_submit_raises_it() -> None:
    calls: list[int] = []

    def push(source: str, rows: list[dict[str, Any]]) -> None:
        calls.append(len(rows))
        raise ResponseError("OOM command not allowed when used memory > 'maxmemory'")

    async def scenario() -> None:
        pusher = MicroBatchPusher(push, WorkerMetrics(), flush_ms=1, max_backoff_s=0.05)
        released: list[bool] = []
        await pusher.submit("src", {"u1": {"user_id": "u1"}}, 1, lambda: released.append(True))
        await asyncio.wait_for(pusher.flush(), 5)
        assert pusher.failure is not None
        with pytest.raises(PermanentStoreError, match="feast write failed permanently.*OOM"):
            await pusher.submit("src", {"u2": {"user_id": "u2"}}, 1, lambda: released.append(True))
        await pusher.close()
        assert released == [] and calls == [1], "not retried, nothing released"

    asyncio.run(scenario())


def test_close_gives_up_on_a_push_hanging_in_feast_within_its_timeout() -> None:
    stuck = threading.Event()

    def push(source: str, rows: list[dict[str, Any]]) -> None:
        stuck.wait(30)  # Feast (or its Redis) not answering

    async def scenario() -> float:
        pusher = MicroBatchPusher(push, WorkerMetrics(), flush_ms=1, close_timeout_s=0.5)
        released: list[bool] = []
        await pusher.submit("src", {"u1": {"user_id": "u1"}}, 1, lambda: released.append(True))
        await asyncio.sleep(0.05)
        began = time.monotonic()
        await pusher.close()
        assert released == [], "an unpushed batch is never released"
        return time.monotonic() - began

    try:
        assert asyncio.run(scenario()) < 5
    finally:
        stuck.set()


class Acked:
    """A topic sender that hands back the broker's acknowledgement; the first ``failures`` deliveries fail."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.delivered: list[bytes] = []
        self.pending: list[tuple[asyncio.Future[None], bytes]] = []

    async def __call__(self, key: bytes | None, value: bytes, partition: int | None = None) -> asyncio.Future[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((ack, value))
        return ack

    def settle(self) -> None:
        for ack, value in self.pending:
            if self.failures:
                self.failures -= 1
                ack.set_exception(TimeoutError("batch expired"))
            else:
                self.delivered.append(value)
                ack.set_result(None)
        self.pending.clear()


def test_the_batch_is_released_only_once_the_broker_acknowledged_its_by_item_bundles() -> None:
    forward = Acked(failures=1)
    proc = processor()
    proc.forward = forward
    events = [InteractionEvent.new("u1", f"i{n}", "view", timestamp=APPEND) for n in range(6)]
    released: list[bool] = []

    async def scenario() -> None:
        task = asyncio.create_task(
            proc.process([message(e, n) for n, e in enumerate(events)], lambda: released.append(True))
        )
        while not forward.pending:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert not released, "released before the by-item bundles were acknowledged"
        sent = len(forward.pending)
        forward.settle()  # the first delivery fails: its bundle is sent again
        while not forward.pending:
            await asyncio.sleep(0.01)
        assert not released
        forward.settle()
        await asyncio.wait_for(task, 5)
        assert len(forward.delivered) == sent

    asyncio.run(scenario())
    assert released == [True]
    entries = sum(len(decode_bundle(v).entries) for v in forward.delivered)
    assert entries == len(events)
