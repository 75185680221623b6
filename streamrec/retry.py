"""Retries and cool-downs, one policy type for every component (built on ``tenacity``).

Two shapes of "try again" exist in streamrec:

* **Retry until it works** (:func:`retry_async`, :func:`retry_sync`): a store write whose effect must not be
  lost (Bloom filter, Feast row, popularity scores) or a producer whose local queue is full. The caller waits,
  with exponential backoff; offsets stay uncommitted meanwhile, so a crash loses nothing.
* **Fail fast for a while** (:class:`Cooldown`): a read on the request path (Triton, Feast, Bloom check)
  that has a fallback. After a failure, calls are refused for ``seconds`` so a dead dependency costs no time
  per request; the first call after that probes it again.

``retry_if`` decides which errors are worth waiting for; by default every :class:`Exception` (never
``CancelledError``/``KeyboardInterrupt``, so shutdown is not delayed by a retry loop). Store writers pass
:func:`transient_error`: a permanent error (:func:`permanent_error`: wrong key type, out of memory, refused
credentials, a malformed call) is raised at once instead of stalling a partition forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential,
)

from streamrec.errors import StreamrecError

T = TypeVar("T")

#: ``on_retry(error, seconds until the next attempt)``: count and log a failed attempt.
OnRetry = Callable[[BaseException, float], None]


def any_error(exc: BaseException) -> bool:
    """The default ``retry_if``: every ordinary exception (cancellation and interrupts end the retries)."""
    return isinstance(exc, Exception)


#: Redis errors that waiting does not cure: credentials or ACLs refused, a full server (maxmemory with a
#: no-eviction policy), a client-side encoding error.
_PERMANENT_REDIS = (
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
    redis_errors.NoPermissionError,
    redis_errors.OutOfMemoryError,
    redis_errors.DataError,
)
#: Server replies that pass once the cluster or the server is ready again (failover, loading, resharding).
_TRANSIENT_REDIS = (
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    redis_errors.AskError,
    redis_errors.BusyLoadingError,
)
_TRANSIENT_REPLY_PREFIXES = ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK")
_PERMANENT_REPLY_PREFIXES = ("WRONGTYPE", "OOM", "NOAUTH", "WRONGPASS", "NOPERM")


def permanent_error(exc: BaseException) -> bool:
    """True for an error a retry cannot cure: refused credentials, WRONGTYPE, OOM, any other error reply of
    the server (a malformed command) and programming errors (``TypeError``, ``ValueError``, ``KeyError``).
    Connection loss, timeouts and a server still loading are transient."""
    if isinstance(exc, _TRANSIENT_REDIS):
        return False
    if isinstance(exc, _PERMANENT_REDIS):
        return True
    if isinstance(exc, redis_errors.RedisError):
        # A pipeline prefixes the server's reply with "Command # n (...) of pipeline caused error: ".
        reply = str(exc).rsplit(" caused error: ", 1)[-1].lstrip()
        if isinstance(exc, redis_errors.ResponseError):
            return not reply.startswith(_TRANSIENT_REPLY_PREFIXES)
        return reply.startswith(_PERMANENT_REPLY_PREFIXES)  # connection errors, timeouts: transient
    return isinstance(exc, TypeError | ValueError | KeyError)


class PermanentStoreError(StreamrecError):
    """A store refused a write in a way no retry cures (WRONGTYPE, OOM, refused credentials): the work fails
    with this message instead of stalling silently behind a retry loop."""

    def __init__(self, store: str, cause: BaseException) -> None:
        self.store = store
        self.cause = cause
        super().__init__(
            f"{store} write failed permanently ({type(cause).__name__}: {cause}); nothing is committed, and the"
            f" work is done again once the {store} problem is fixed"
        )


def transient_error(exc: BaseException) -> bool:
    """``retry_if`` for store writes: every ordinary exception that is not :func:`permanent_error`."""
    return any_error(exc) and not permanent_error(exc)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: the first wait is ``initial_s``, each next one doubles, capped at ``max_s``.

    ``initial_s == max_s`` gives a constant wait. ``attempts=None`` retries until the call succeeds;
    otherwise the last error is raised after ``attempts`` calls.
    """

    initial_s: float = 0.05
    max_s: float = 5.0
    attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {self.initial_s} and {self.max_s}")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"backoff attempts must be >= 1 or None, got {self.attempts}")

    def tenacity_policy(self, retry_if: Callable[[BaseException], bool], on_retry: OnRetry | None) -> dict[str, Any]:
        """Keyword arguments of ``tenacity.Retrying``/``AsyncRetrying`` for this policy."""

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None and state.next_action is not None:
                error = state.outcome.exception()
                if error is not None:
                    on_retry(error, state.next_action.sleep)

        return {
            "wait": wait_exponential(multiplier=self.initial_s, max=self.max_s),
            "stop": stop_never if self.attempts is None else stop_after_attempt(self.attempts),
            "retry": retry_if_exception(retry_if),
            "before_sleep": before_sleep,
            "reraise": True,
        }


async def retry_async(
    op: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    retry_if: Callable[[BaseException], bool] = any_error,
    on_retry: OnRetry | None = None,
) -> T:
    """Await ``op()`` until it succeeds (or ``backoff.attempts`` are spent: the last error is raised)."""
    async for attempt in AsyncRetrying(**backoff.tenacity_policy(retry_if, on_retry)):
        with attempt:
            return await op()
    raise AssertionError("unreachable: tenacity either returns, raises or retries")  # pragma: no cover


def retry_sync(
    op: Callable[[], T],
    backoff: Backoff,
    *,
    retry_if: Callable[[BaseException], bool] = any_error,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``op()`` until it succeeds; ``sleep`` may do useful work while waiting (e.g. serve callbacks)."""

    def wait(seconds: float) -> None:
        sleep(seconds)

    retrying = Retrying(sleep=wait, **backoff.tenacity_policy(retry_if, on_retry))
    return retrying(op)


class Cooldown:
    """After a failure, :attr:`cooling` is true for ``seconds``: callers skip the dependency meanwhile.

    Thread-safe; the clock is monotonic. :attr:`last_error` says why, for the flag or message callers show.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds < 0:
            raise ValueError(f"cooldown seconds must be >= 0, got {seconds}")
        self.seconds = seconds
        self.last_error = ""
        self._clock = clock
        self._until = 0.0
        self._lock = threading.Lock()

    @property
    def cooling(self) -> bool:
        return self._clock() < self._until

    def trip(self, error: str) -> None:
        """Record a failure: refuse calls for the next ``seconds``."""
        with self._lock:
            self._until = self._clock() + self.seconds
            self.last_error = error

    def call(
        self, fn: Callable[[], T], unavailable: Callable[[str], BaseException], trips_on: type[BaseException]
    ) -> T:
        """``fn()`` unless cooling (then ``unavailable(last_error)`` is raised); a ``trips_on`` error trips it."""
        if self.cooling:
            raise unavailable(self.last_error)
        try:
            return fn()
        except trips_on as exc:
            self.trip(str(exc))
            raise
