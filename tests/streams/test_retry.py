"""The one retry/cool-down helper: retries until success, gives up after its attempts, never swallows cancels."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as redis_errors

from streamrec.retry import Backoff, Cooldown, permanent_error, retry_async, retry_sync, transient_error


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("down")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_sync_retry_waits_exponentially_up_to_the_cap_then_succeeds() -> None:
    flaky, slept, seen = Flaky(5), [], []
    result = retry_sync(
        flaky, Backoff(initial_s=0.1, max_s=0.5), sleep=slept.append, on_retry=lambda e, w: seen.append((str(e), w))
    )
    assert result == "ok" and flaky.calls == 6
    assert slept == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert [w for _, w in seen] == slept and {e for e, _ in seen} == {"down"}


def test_sync_retry_raises_the_last_error_after_its_attempts() -> None:
    flaky = Flaky(10)
    with pytest.raises(ConnectionError, match="down"):
        retry_sync(flaky, Backoff(initial_s=0.01, max_s=0.01, attempts=3), sleep=lambda _: None)
    assert flaky.calls == 3


def test_errors_outside_retry_if_are_raised_at_once() -> None:
    flaky = Flaky(1, ValueError("permanent"))
    with pytest.raises(ValueError, match="permanent"):
        retry_sync(flaky, Backoff(), retry_if=lambda e: isinstance(e, ConnectionError), sleep=lambda _: None)
    assert flaky.calls == 1


def test_async_retry_retries_until_success() -> None:
    flaky, waits = Flaky(3), []

    async def op() -> str:
        return flaky()

    result = asyncio.run(retry_async(op, Backoff(initial_s=0.001, max_s=0.002), on_retry=lambda e, w: waits.append(w)))
    assert result == "ok" and flaky.calls == 4
    assert waits == pytest.approx([0.001, 0.002, 0.002])


def test_async_retry_is_never_caught_by_a_cancel() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retry_async(op, Backoff(initial_s=0.001, max_s=0.001)))
    assert calls == 1


def test_backoff_rejects_impossible_policies() -> None:
    for bad in ({"initial_s": 0.0}, {"initial_s": 2.0, "max_s": 1.0}, {"attempts": 0}):
        with pytest.raises(ValueError, match="backoff"):
            Backoff(**bad)  # type: ignore[arg-type]


def test_cooldown_refuses_calls_until_its_time_has_passed() -> None:
    now = [100.0]
    cooldown = Cooldown(2.0, clock=lambda: now[0])
    assert not cooldown.cooling
    with pytest.raises(ConnectionError):
        cooldown.call(Flaky(1), unavailable=RuntimeError, trips_on=ConnectionError)
    assert cooldown.cooling and cooldown.last_error == "down"
    probe = Flaky(0)
    with pytest.raises(RuntimeError, match="down"):
        cooldown.call(probe, unavailable=RuntimeError, trips_on=ConnectionError)
    assert probe.calls == 0
    now[0] += 2.0
    assert cooldown.call(probe, unavailable=RuntimeError, trips_on=ConnectionError) == "ok"


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), True),
        (redis_errors.ResponseError("Command # 1 (BF.INSERT u) of pipeline caused error: WRONGTYPE Operation"), True),
        (redis_errors.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'"), True),
        (redis_errors.AuthenticationError("invalid username-password pair"), True),
        (redis_errors.ConnectionError("Connection refused"), False),
        (redis_errors.TimeoutError("Timeout reading from socket"), False),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), False),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), False),
        (OSError("network unreachable"), False),
        (TypeError("bad row"), True),
    ],
)
def test_permanent_store_errors_are_not_retried(error: BaseException, permanent: bool) -> None:
    assert permanent_error(error) is permanent
    calls: list[int] = []

    def op() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        retry_sync(op, Backoff(0.001, 0.001, attempts=3), retry_if=transient_error, sleep=lambda s: None)
    assert len(calls) == (1 if permanent else 3)
