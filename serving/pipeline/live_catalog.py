"""Every serving process follows the live catalog of the export version it serves.

The catalog sync publishes :class:`~streamrec.catalog.live.LiveItem` entries per export version into Redis
(:mod:`streamrec.catalog.live`). Each process holding stages — the fused model's process, or each stage's
process in the ensemble layout, in every Triton instance and every pod — holds one :class:`LiveCatalog`: the
current :class:`~serving.pipeline.catalog_snapshot.CatalogSnapshot`, shared by the stages of that process.
A :class:`CatalogFollower` thread reads the whole live catalog once when the process starts (before its first
request), then waits on the change stream (``XREAD BLOCK``) and applies each batch of changes as a new
snapshot, swapped in whole: a running batch keeps the snapshot it started with.

If Redis cannot be reached the process serves the last snapshot it has (the export alone if it never got one)
and tries again every ``store_retry_s``; a reader that fell behind the trimmed change stream reads the whole
catalog again (the reader's job).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from serving.pipeline.catalog_snapshot import Applied, CatalogSnapshot, ExportRows, apply_entries
from serving.pipeline.export import ExportReader
from streamrec.catalog.live import LiveCatalogReader, LiveItem, LiveKeys
from streamrec.settings import mask_url

if TYPE_CHECKING:
    from serving.pipeline.config import StageConfig

log = logging.getLogger(__name__)


class LiveSource(Protocol):
    """Where live-catalog entries come from (:class:`LiveCatalogReader` over Redis)."""

    def bootstrap(self) -> list[LiveItem]: ...

    def poll(self, block_ms: int = 100) -> list[LiveItem]: ...


@dataclass
class FollowerStats:
    """What the follower has done; read by tests, benchmarks and logs."""

    bootstrapped: bool = False
    polls: int = 0
    batches: int = 0  # polls that changed the snapshot
    errors: int = 0
    last_error: str = ""
    last_applied_at: float = 0.0  # time.monotonic()


class LiveCatalog:
    """One process's current snapshot: read with :attr:`snapshot` (no lock), replaced whole by :meth:`apply`."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self._snapshot = snapshot
        self._apply_lock = threading.Lock()  # one writer at a time (the follower; tests may apply directly)
        self._follow_lock = threading.Lock()
        self.follower: CatalogFollower | None = None

    @property
    def snapshot(self) -> CatalogSnapshot:
        return self._snapshot

    def apply(self, entries: Iterable[LiveItem]) -> Applied:
        with self._apply_lock:
            applied = apply_entries(self._snapshot, entries)
            self._snapshot = applied.snapshot  # one reference assignment: readers see the old or the new one
        for reason in applied.skipped:
            log.warning("live catalog entry skipped: %s", reason)
        return applied

    def follow(self, open_source: Callable[[], LiveSource], block_ms: int, retry_s: float) -> CatalogFollower:
        """Start following (once per process; later calls return the running follower)."""
        with self._follow_lock:
            if self.follower is None:
                self.follower = CatalogFollower(self, open_source, block_ms, retry_s)
                self.follower.start()
            return self.follower

    def close(self) -> None:
        with self._follow_lock:
            if self.follower is not None:
                self.follower.stop()
                self.follower = None


class CatalogFollower:
    """The polling thread: bootstrap (synchronously, from :meth:`start`), then poll and apply until stopped."""

    def __init__(
        self, catalog: LiveCatalog, open_source: Callable[[], LiveSource], block_ms: int, retry_s: float
    ) -> None:
        self.catalog = catalog
        self.open_source = open_source
        self.block_ms = block_ms
        self.retry_s = retry_s
        self.stats = FollowerStats()
        self._source: LiveSource | None = None
        self._stop = threading.Event()
        self._started_ok = False
        self._thread = threading.Thread(target=self._run, name="live-catalog", daemon=True)

    def start(self) -> None:
        """Read the whole live catalog now (so the first request already sees it), then follow on the thread.
        A failure here is logged; the thread keeps trying."""
        self._started_ok = self._step(bootstrap=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        if not self._started_ok:
            self._stop.wait(self.retry_s)
        while not self._stop.is_set():
            if not self._step(bootstrap=False):
                self._stop.wait(self.retry_s)

    def _step(self, bootstrap: bool) -> bool:
        """One read and apply; False after an error (the caller waits before the next one)."""
        try:
            if self._source is None:
                self._source = self.open_source()
            if bootstrap or not self.stats.bootstrapped:
                entries = self._source.bootstrap()
                self.stats.bootstrapped = True
            else:
                entries = self._source.poll(self.block_ms)
            self.stats.polls += 1
            self.stats.last_error = ""
            if entries:
                applied = self.catalog.apply(entries)
                if applied.added or applied.availability:
                    self.stats.batches += 1
                    self.stats.last_applied_at = time.monotonic()
            return True
        except Exception as exc:  # Redis down, a bad entry: keep serving the last snapshot, try again later
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            repeated = error == self.stats.last_error
            self.stats.errors += 1
            self.stats.last_error = error
            (log.debug if repeated else log.warning)("live catalog not updated (serving the last snapshot): %s", error)
            return False


def redis_source(redis_url: str, keys: LiveKeys, timeout_s: float, block_ms: int) -> LiveSource:
    """A reader of the live catalog on its own connection (its socket timeout outlasts the blocking read)."""
    import redis

    try:
        client = redis.Redis.from_url(
            redis_url, socket_timeout=timeout_s + block_ms / 1000.0, socket_connect_timeout=timeout_s
        )
    except ValueError as exc:
        raise ValueError(f"live catalog: bad Redis URL {mask_url(redis_url)}: {exc}") from None
    return LiveCatalogReader(client, keys)


_catalogs: weakref.WeakKeyDictionary[ExportReader, LiveCatalog] = weakref.WeakKeyDictionary()
_catalogs_lock = threading.Lock()


def export_catalog(export: ExportReader) -> LiveCatalog:
    """The servable items of ``export``: one :class:`LiveCatalog` per reader, so the stages built on one reader
    (one process) share it; the export's items alone until followed."""
    with _catalogs_lock:
        catalog = _catalogs.get(export)
        if catalog is None:
            rows = ExportRows(export.id_maps.item_ids, export.items, len(export.id_maps.categories))
            catalog = _catalogs[export] = LiveCatalog(CatalogSnapshot.of_export(rows))
        return catalog


def close_catalog(export: ExportReader) -> None:
    """Stop following the live catalog of ``export`` (if anything does)."""
    with _catalogs_lock:
        catalog = _catalogs.get(export)
    if catalog is not None:
        catalog.close()


def process_catalog(config: StageConfig, export: ExportReader) -> LiveCatalog:
    """The live catalog of this process's export (one per process, shared by its stages), followed from Redis
    when ``live_catalog_enabled``."""
    catalog = export_catalog(export)
    s = config.serving
    if s.live_catalog_enabled:
        keys = LiveKeys.for_version(export.version, config.catalog.live_prefix)
        catalog.follow(
            lambda: redis_source(config.redis_url, keys, s.live_catalog_timeout_s, s.live_catalog_block_ms),
            s.live_catalog_block_ms,
            s.store_retry_s,
        )
    return catalog
