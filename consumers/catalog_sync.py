"""The catalog sync: the compacted ``items`` / ``users`` topics -> the live catalog in Redis and Feast's views.

On every start it reads both topics from the beginning (a replay rebuilds everything: no committed offsets),
validates each record with the core codec (rejects go to ``catalog.dlq`` once, with the reason), and keeps
the last-writer-wins catalog (:class:`~streamrec.catalog.state.CatalogState`). Per poll, the records that
won are turned into live entries for the latest export (:mod:`consumers.catalog_plan`): items the export knows
get their export index and availability, unknown items are embedded from their content alone (batched) and get
a stable index after the export's; the entries that changed are published (``streamrec.catalog.live``), and
the Feast ``item_content`` / ``user_profile`` rows are written. When a newer export is published, everything is
published again for it. Delivery is at least once; every write is idempotent.

The loop talks to its ports only (:class:`CatalogFeed`, :class:`LiveCatalog`, :class:`Embedder`, ...):
adapters are in :mod:`consumers.catalog_io`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Protocol

from consumers.catalog_io import RawRecord
from consumers.catalog_plan import ContentRequest, ExportCatalog, embedded_items, plan_items
from consumers.metrics import CatalogSyncMetrics
from streamrec import artifacts as art
from streamrec.catalog.codec import CatalogKind, decode_message
from streamrec.catalog.live import LiveItem, LiveVectors
from streamrec.catalog.models import CatalogItem, ItemRecord, ItemTombstone, UserRecord
from streamrec.catalog.settings import CatalogSettings
from streamrec.catalog.state import CatalogState
from streamrec.errors import ArtifactError, InvalidEventError

log = logging.getLogger(__name__)


class CatalogFeed(Protocol):
    def poll(self, max_messages: int, timeout_s: float) -> list[RawRecord]: ...
    def caught_up(self) -> bool: ...
    def close(self) -> None: ...


class DeadLetters(Protocol):
    def reject(self, error: InvalidEventError, raw: RawRecord) -> bool: ...
    def flush(self, timeout_s: float = ...) -> None: ...


class LiveCatalog(Protocol):
    """One export version's live catalog, as its writer sees it."""

    vectors: dict[str, tuple[str, LiveVectors]]

    def index_for(self, item_id: str) -> int: ...
    def publish(self, items: Sequence[LiveItem], fingerprints: dict[str, str]) -> list[LiveItem]: ...


class Embedder(Protocol):
    image_failures: int

    def embed(self, requests: Sequence[ContentRequest]) -> list[LiveVectors]: ...


class FeatureViews(Protocol):
    def write_items(self, records: Sequence[ItemRecord]) -> int: ...
    def write_users(self, records: Sequence[UserRecord]) -> int: ...


@dataclass(frozen=True)
class LoadedExport:
    """The latest export and what the sync built for it."""

    directory: Path
    catalog: ExportCatalog
    live: LiveCatalog
    embedder: Embedder


#: export dir -> (its catalog, its live catalog, its embedder): how the sync opens a version.
ExportOpener = Callable[[Path, ExportCatalog], tuple[LiveCatalog, Embedder]]
#: versions to keep -> the versions whose live catalogs were deleted.
RetireVersions = Callable[[set[str]], list[str]]


def load_export_catalog(directory: Path) -> ExportCatalog:
    meta = art.load_metadata(directory)
    return ExportCatalog.from_id_maps(directory.name, art.load_id_maps(directory, meta), meta.feature_spec.image_model)


@dataclass
class SyncStats:
    records: int = 0
    rejected: int = 0
    published: int = 0
    embedded: int = 0
    feast_rows: int = 0
    exports: list[str] = field(default_factory=list)


class CatalogSync:
    def __init__(
        self,
        feed: CatalogFeed,
        dead_letters: DeadLetters,
        export_root: Path,
        open_export: ExportOpener,
        features: FeatureViews | None,
        catalog: CatalogSettings,
        metrics: CatalogSyncMetrics | None = None,
        poll_max_messages: int = 5000,
        poll_timeout_s: float = 0.2,
        embed_batch: int = 256,
        publish_batch: int = 5000,
        export_check_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        retire_versions: RetireVersions | None = None,
    ) -> None:
        self.feed = feed
        self.dead_letters = dead_letters
        self.export_root = export_root
        self.open_export = open_export
        self.features = features
        self.catalog = catalog
        self.metrics = metrics or CatalogSyncMetrics()
        self.poll_max_messages = poll_max_messages
        self.poll_timeout_s = poll_timeout_s
        self.embed_batch = embed_batch
        self.publish_batch = publish_batch
        self.export_check_s = export_check_s
        self.clock = clock
        self.retire_versions = retire_versions
        self.items: CatalogState[ItemRecord] = CatalogState()
        self.users: CatalogState[UserRecord] = CatalogState()
        self.export: LoadedExport | None = None
        # Item ids whose live entry is not published for the export yet: changes read (first), then a republish.
        self.changed: dict[str, None] = {}
        self.republish: dict[str, None] = {}
        self.started_ms = int(clock() * 1000)
        self.stats = SyncStats()
        self._checked_export_at = float("-inf")

    @property
    def pending(self) -> int:
        """Items whose live entry is still to publish (an id both changed and republished counts twice)."""
        return len(self.changed) + len(self.republish)

    # ---------------------------------------------------------------------------------------------- export

    def check_export(self, force: bool = False) -> bool:
        """Switch to a newer export in ``export_root`` (True when switched): everything is published again."""
        now = time.monotonic()
        if not force and now - self._checked_export_at < self.export_check_s:
            return False
        self._checked_export_at = now
        try:
            directory = art.current_dir(self.export_root)
        except ArtifactError as exc:
            if self.export is None:
                log.warning("no export to publish the live catalog for yet: %s", exc)
            return False
        if self.export is not None and self.export.directory == directory:
            return False
        export_catalog = load_export_catalog(directory)
        live, embedder = self.open_export(directory, export_catalog)
        self.export = LoadedExport(directory, export_catalog, live, embedder)
        self.republish = dict.fromkeys(self.items.records)
        self.metrics.set_export(directory.name)
        self.metrics.export_switch.set(self.clock())
        self.stats.exports.append(directory.name)
        log.info("publishing the live catalog for export %s (%d items known to it)", directory.name,
                 export_catalog.n_items)  # fmt: skip
        if self.retire_versions is not None:
            # Versions the trainer's retention removed can no longer be served: their live catalogs go too.
            kept = {*art.list_versions(self.export_root), directory.name}
            for version in self.retire_versions(kept):
                log.info("deleted the live catalog of export %s (no longer in the export root)", version)
        return True

    # ------------------------------------------------------------------------------------------------ read

    def _kind(self, topic: str) -> CatalogKind:
        return CatalogKind.ITEMS if topic == self.catalog.items_topic else CatalogKind.USERS

    def ingest(self, batch: Sequence[RawRecord]) -> tuple[list[ItemRecord], list[UserRecord]]:
        """Validate and reduce a batch; returns the records that became the winners of their ids."""
        items: dict[str, ItemRecord] = {}
        users: dict[str, UserRecord] = {}
        for raw in batch:
            kind = self._kind(raw.topic)
            self.stats.records += 1
            try:
                record = decode_message(kind, raw.key, raw.value, self.catalog.max_record_bytes)
            except InvalidEventError as exc:
                self.dead_letters.reject(exc, raw)
                self.stats.rejected += 1
                self.metrics.records.labels(kind=kind.value, outcome="rejected").inc()
                self.metrics.rejects.labels(reason=exc.code.value).inc()
                continue
            if record is None:  # a purge marker: compaction's business, no state change
                self.metrics.records.labels(kind=kind.value, outcome="purge").inc()
                continue
            if isinstance(record, CatalogItem | ItemTombstone):
                outcome = self.items.apply(record)
                if self.items.records.get(record.key) is record:  # it won (a first tombstone counts as unchanged)
                    items[record.key] = record
            else:
                outcome = self.users.apply(record)
                if self.users.records.get(record.key) is record:
                    users[record.key] = record
            self.metrics.records.labels(kind=kind.value, outcome=outcome.value).inc()
        return list(items.values()), list(users.values())

    # ----------------------------------------------------------------------------------------------- write

    def publish_pending(self, limit: int | None = None) -> int:
        """Publish the live entries of up to ``limit`` pending items for the export; returns how many changed.

        Entries that need no embedding (known items, availability changes, deletes, unchanged content) are
        published at once; then at most ``embed_batch`` new contents are embedded and published. Items left to
        embed stay pending for the next call, so an availability change never waits behind a long embedding.
        """
        export = self.export
        if export is None or not self.pending:
            return 0
        room = limit or self.pending
        take = list(islice(self.changed, room))
        chosen = set(take)
        for item_id in self.republish:
            if len(take) >= room:
                break
            if item_id not in chosen:
                take.append(item_id)
        plan = plan_items([self.items.records[i] for i in take], export.catalog, export.live.index_for,
                          export.live.vectors)  # fmt: skip
        done = [entry.item_id for entry in plan.ready]
        changed = self._publish(export, plan.ready, {})
        chunk = plan.to_embed[: self.embed_batch]
        if chunk:
            began, failures = time.monotonic(), export.embedder.image_failures
            vectors = export.embedder.embed(chunk)
            self.metrics.embed_seconds.observe(time.monotonic() - began)
            self.metrics.items_embedded.inc(len(chunk))
            self.metrics.image_failures.inc(export.embedder.image_failures - failures)
            self.stats.embedded += len(chunk)
            fingerprints = {r.item.item_id: r.fingerprint for r in chunk}
            changed += self._publish(export, embedded_items(chunk, vectors), fingerprints)
            done += list(fingerprints)
        for item_id in done:
            self.changed.pop(item_id, None)
            self.republish.pop(item_id, None)
        return changed

    def _publish(self, export: LoadedExport, entries: Sequence[LiveItem], fingerprints: dict[str, str]) -> int:
        if not entries:
            return 0
        changed = export.live.publish(entries, fingerprints)
        published_at_ms = int(self.clock() * 1000)
        for entry in changed:
            if entry.updated_ms >= self.started_ms:
                self.metrics.publish_lag.observe(max(published_at_ms - entry.updated_ms, 0) / 1000)
        self.metrics.entries_published.inc(len(changed))
        self.stats.published += len(changed)
        return len(changed)

    def write_features(self, items: Sequence[ItemRecord], users: Sequence[UserRecord]) -> None:
        if self.features is None:
            return
        n_items = self.features.write_items(items)
        n_users = self.features.write_users(users)
        self.metrics.feast_rows.labels(view="item_content").inc(n_items)
        self.metrics.feast_rows.labels(view="user_profile").inc(n_users)
        self.stats.feast_rows += n_items + n_users

    def step(self) -> int:
        """One poll: read, reduce, publish what changed, write Feast rows. Returns the messages read."""
        self.check_export()
        batch = self.feed.poll(self.poll_max_messages, self.poll_timeout_s)
        self.metrics.last_poll.set(self.clock())
        items, users = self.ingest(batch)
        self.changed.update(dict.fromkeys(r.key for r in items))
        # Nothing is published while the replay has not reached the end the topics had at start: an id's older
        # versions would be published, then replaced (readers would churn, and a restart would not be a no-op).
        # Then bounded work per step, so a republish of a large catalog never starves the live changes for long;
        # live entries before Feast rows: they are what the delay to a recommendation waits for.
        if self.feed.caught_up():
            self.publish_pending(self.publish_batch)
        self.write_features(items, users)
        self.dead_letters.flush()
        self.metrics.live_items.set(len(self.items))
        return len(batch)

    def run(self, should_stop: Callable[[], bool], idle_exit_s: float | None = None) -> SyncStats:
        """Until ``should_stop()`` (or, once caught up and nothing is pending, ``idle_exit_s`` without messages)."""
        self.check_export(force=True)
        last_message = time.monotonic()
        caught_up_logged = False
        try:
            while not should_stop():
                if self.step():
                    last_message = time.monotonic()
                if not caught_up_logged and self.feed.caught_up() and not self.pending:
                    caught_up_logged = True
                    log.info(
                        "catalog replayed: %d items (%d deleted), %d users; %d entries published, %d embedded",
                        len(self.items), len(self.items.tombstones()), len(self.users), self.stats.published,
                        self.stats.embedded,
                    )  # fmt: skip
                idle = time.monotonic() - last_message
                if idle_exit_s is not None and caught_up_logged and not self.pending and idle >= idle_exit_s:
                    break
        finally:
            self.dead_letters.flush()
            self.feed.close()
        return self.stats
