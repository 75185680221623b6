"""The one retry/cool-down helper: retries until success, gives up after its attempts, never swallows cancels."""

from __future__ import annotations

import asyncio

import pytest

from streamrec.retry import Backoff, Cooldown, retry_async, retry_sync


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
