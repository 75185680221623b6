"""I/O adapters of the pipeline: the Feast user-feature read and the Bloom-filter check.

Both degrade instead of failing: a store that cannot be reached raises :class:`StoreUnavailableError` to the
stage (which passes through and flags the request), and is not retried for ``retry_s`` so that a dead store
costs no time per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from streamrec import feast_config
from streamrec.bloom.base import BloomBackend
from streamrec.bloom.store import choose_backend, module_names
from streamrec.errors import StoreUnavailableError
from streamrec.settings import BloomSettings, RedisSettings, mask_url

T = TypeVar("T")


class Backoff:
    """Remembers a failure and refuses calls for ``retry_s``; one thread probes at a time."""

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self.down_until = 0.0
        self.last_error = ""
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], T]) -> T:
        if time.monotonic() < self.down_until:
            raise StoreUnavailableError(f"store marked down: {self.last_error}")
        try:
            return fn()
        except StoreUnavailableError as exc:
            self.fail(str(exc))
            raise

    def fail(self, error: str) -> None:
        with self._lock:
            self.down_until = time.monotonic() + self.retry_s
            self.last_error = error


def open_feature_store(
    repo: Path, redis_url: str | None, project: str | None = None, registry: Path | None = None
) -> Any:
    """A Feast FeatureStore over ``repo`` with the same overrides the streams worker applies when it writes
    (:mod:`streamrec.feast_config`); any failure is "no features now"."""
    repo = Path(repo).resolve()
    if not (repo / "feature_store.yaml").is_file():
        raise StoreUnavailableError(f"no Feast repository at {repo} (feature_store.yaml missing)")
    try:
        return feast_config.open_feature_store(repo, redis_url or RedisSettings.load().effective_url, project, registry)
    except Exception as exc:
        raise StoreUnavailableError(f"cannot open the Feast repository {repo}: {str(exc).splitlines()[0]}") from None


class FeastUserFeatures:
    """ONE ``get_online_features`` call per batch of users: recent item ids and the count features."""

    def __init__(
        self,
        repo: Path,
        view: str,
        recent_field: str,
        count_fields: Sequence[str],
        redis_url: str | None = None,
        retry_s: float = 2.0,
        entity_key: str = "user_id",
        project: str | None = None,
        registry: Path | None = None,
    ) -> None:
        self.repo = Path(repo)
        self.project = project
        self.registry = registry
        self.view = view
        self.recent_field = recent_field
        self.count_fields = list(count_fields)
        self.redis_url = redis_url
        self.entity_key = entity_key
        self.features = [f"{view}:{name}" for name in (recent_field, *self.count_fields)]
        self.backoff = Backoff(retry_s)
        self._store: Any = None

    def _store_or_open(self) -> Any:
        if self._store is None:
            self._store = open_feature_store(self.repo, self.redis_url, self.project, self.registry)
        return self._store

    def _read(self, user_ids: Sequence[str]) -> dict[str, list[Any]]:
        store = self._store_or_open()
        try:
            response = store.get_online_features(
                features=self.features, entity_rows=[{self.entity_key: u} for u in user_ids]
            )
            return dict(response.to_dict())
        except Exception as exc:  # redis ConnectionError, registry errors: all mean "no features now"
            raise StoreUnavailableError(f"Feast online read failed: {str(exc).splitlines()[0][:200]}") from None

    def read(self, user_ids: Sequence[str]) -> list[tuple[list[str], list[float]]]:
        """(recent item ids newest first, counts in ``count_fields`` order) per user; missing values empty/0."""
        if not user_ids:
            return []
        data = self.backoff.call(lambda: self._read(user_ids))
        recent = data.get(self.recent_field) or [None] * len(user_ids)
        counts = [data.get(name) or [None] * len(user_ids) for name in self.count_fields]
        out = []
        for row in range(len(user_ids)):
            items = [str(v) for v in (recent[row] or [])]
            out.append((items, [float(c[row] or 0.0) for c in counts]))
        return out

    def ping(self) -> None:
        """One read of a dummy entity: registry loadable and online store reachable (raises otherwise)."""
        self._read(["__streamrec_readiness__"])


class BloomChecker:
    """Seen-item checks: one ``BF.MEXISTS`` (or bitmap script) per user, all users of a batch in one round trip."""

    def __init__(self, redis_url: str, bloom: BloomSettings, timeout_s: float = 0.1, retry_s: float = 2.0) -> None:
        self.redis_url = redis_url
        self.bloom = bloom
        self.timeout_s = timeout_s
        self.backoff = Backoff(retry_s)
        self._client: Any = None
        self._backend: BloomBackend | None = None

    def _connect(self) -> tuple[Any, BloomBackend]:
        import redis

        if self._client is None or self._backend is None:
            client = redis.Redis.from_url(
                self.redis_url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
            )
            try:
                modules = module_names(client.execute_command("MODULE", "LIST"))
            except redis.RedisError as exc:
                client.close()
                raise StoreUnavailableError(f"Redis at {mask_url(self.redis_url)} unreachable: {exc}") from None
            self._client, self._backend = client, choose_backend(self.bloom, modules)
        return self._client, self._backend

    def _check(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[list[bool]]:
        import redis

        client, backend = self._connect()
        try:
            if len(requests) == 1:
                user, items = requests[0]
                replies = [client.execute_command(*backend.check_command(user, items))]
            else:
                pipe = client.pipeline(transaction=False)
                for user, items in requests:
                    pipe.execute_command(*backend.check_command(user, items))
                replies = pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Bloom check failed: {exc}") from None
        return [backend.parse_check(reply, len(items)) for reply, (_, items) in zip(replies, requests, strict=True)]

    def contains(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[list[bool]]:
        """For each (user, items): one bool per item, True if the user has seen it. Raises StoreUnavailableError."""
        todo = [(u, items) for u, items in requests if items]
        if not todo:
            return [[] for _ in requests]
        answers = iter(self.backoff.call(lambda: self._check(todo)))
        return [next(answers) if items else [] for _, items in requests]

    def ping(self) -> None:
        client, _ = self._connect()
        try:
            client.ping()
        except Exception as exc:
            raise StoreUnavailableError(f"Redis at {mask_url(self.redis_url)} unreachable: {exc}") from None
