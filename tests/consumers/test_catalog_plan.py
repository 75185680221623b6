"""The catalog sync's pure parts: which live entry each winning record becomes, the Feast rows, and the loop
over fake ports (last-writer-wins, rejects, purge markers, a newer export republishing everything)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from consumers.catalog_io import RawRecord
from consumers.catalog_plan import (
    ContentRequest,
    ExportCatalog,
    content_fingerprint,
    item_content_row,
    plan_items,
    row_timestamp,
    user_profile_row,
)
from consumers.catalog_sync import CatalogSync
from streamrec import artifacts as art
from streamrec.artifacts import IdMaps
from streamrec.catalog.live import LiveItem, LiveVectors
from streamrec.catalog.models import CatalogItem, ItemRecord, ItemTombstone, UserProfile, UserRecord, UserTombstone
from streamrec.catalog.settings import CatalogSettings
from streamrec.errors import InvalidEventError

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EXPORT = ExportCatalog.from_id_maps("v1", IdMaps(["a", "b"], [], ["<unknown>", "shoes", "hats"]), image_model=None)


def it(item_id: str, minutes: int = 0, **fields: object) -> CatalogItem:
    base: dict[str, object] = {"item_id": item_id, "title": f"T {item_id}", "category": "hats"}
    return CatalogItem.model_validate({**base, **fields, "updated_at": T0 + timedelta(minutes=minutes)})


def tomb(item_id: str, minutes: int = 0) -> ItemTombstone:
    return ItemTombstone(item_id=item_id, deleted=True, updated_at=T0 + timedelta(minutes=minutes))


def vec(seed: float) -> LiveVectors:
    return LiveVectors(
        np.full(4, seed, np.float32), np.zeros(2, np.float32), np.zeros(3, np.float32), np.zeros(0, np.float32)
    )


class Indices:
    def __init__(self, n: int) -> None:
        self.n, self.given = n, dict[str, int]()

    def __call__(self, item_id: str) -> int:
        return self.given.setdefault(item_id, self.n + len(self.given) + 1)


def test_known_items_keep_the_export_index_and_rows_and_a_tombstone_is_unavailable() -> None:
    plan = plan_items([it("a", available=False), it("b", category="new one"), tomb("a", 1)], EXPORT, Indices(2), {})
    assert plan.to_embed == []
    assert plan.ready == [
        LiveItem("a", 1, False, it("a").updated_ms, 2),
        LiveItem("b", 2, True, it("b").updated_ms, 0),  # category unknown to the export
        LiveItem("a", 1, False, tomb("a", 1).updated_ms, 0),
    ]


def test_unknown_items_are_embedded_once_per_content_and_keep_their_index() -> None:
    indices = Indices(2)
    first = plan_items([it("new", price=3.0)], EXPORT, indices, {})
    assert [(r.item.item_id, r.index, r.category_idx, r.price) for r in first.to_embed] == [("new", 3, 2, 3.0)]
    cached = {"new": (first.to_embed[0].fingerprint, vec(1.0))}
    # Only availability changed: same content, vectors reused.
    again = plan_items([it("new", 1, price=3.0, available=False)], EXPORT, indices, cached)
    assert again.to_embed == [] and again.ready[0].index == 3 and not again.ready[0].available
    assert again.ready[0].vectors is cached["new"][1]
    # New text or price: embedded again, same index.
    changed = plan_items([it("new", 2, price=4.0)], EXPORT, indices, cached)
    assert [r.index for r in changed.to_embed] == [3]
    # Deleted: unavailable under the same index.
    assert plan_items([tomb("new", 3)], EXPORT, indices, cached).ready == [
        LiveItem("new", 3, False, tomb("new", 3).updated_ms)
    ]


def test_the_image_enters_the_fingerprint_only_with_an_image_model() -> None:
    plain, pictured = it("x"), it("x", image="https://shop.example/x.png")
    assert content_fingerprint(plain, 1, None) == content_fingerprint(pictured, 1, None)
    assert content_fingerprint(plain, 1, "clip") != content_fingerprint(pictured, 1, "clip")
    assert content_fingerprint(plain, 1, None) != content_fingerprint(plain, 2, None)


def test_feast_rows_of_items_and_profiles() -> None:
    row = item_content_row(it("x", price=2.5, description="soft", image="img/x.png"))
    assert row["category"] == "hats" and row["price"] == 2.5
    assert row["text_embedding_ref"].startswith("sha256:") and row["image_embedding_ref"].startswith("sha256:")
    assert item_content_row(it("y"))["image_embedding_ref"] == ""
    assert item_content_row(tomb("x")) == {
        "category": "unknown",
        "price": 0.0,
        "text_embedding_ref": "",
        "image_embedding_ref": "",
    }
    user = UserProfile(user_id="u", attributes={"segment": "gold", "vip": True, "age": 31, "extra": 1}, updated_at=T0)
    fields = ["profile_segment", "profile_vip", "profile_age", "profile_country"]
    assert user_profile_row(user, fields) == {
        "profile_segment": "gold", "profile_vip": "true", "profile_age": "31", "profile_country": "",
    }  # fmt: skip
    gone = UserTombstone(user_id="u", deleted=True, updated_at=T0)
    assert set(user_profile_row(gone, fields).values()) == {""}
    # A delete is stamped after an upsert of the same instant (Feast keeps strictly newer rows only) and
    # before any later upsert (records have millisecond resolution).
    assert (
        row_timestamp(it("x"))
        < row_timestamp(tomb("x"))
        < row_timestamp(it("x", minutes=0, title="later")) + timedelta(milliseconds=1)
    )


# ------------------------------------------------------------------------------------------- the loop, faked

CATALOG = CatalogSettings(items_topic="items", users_topic="users")


class FakeFeed:
    def __init__(self) -> None:
        self.batches: list[list[RawRecord]] = []
        self.offset = 0

    def add(self, topic: str, key: str | None, value: bytes | None) -> None:
        self.offset += 1
        self.batches.append([RawRecord(topic, 0, self.offset, key.encode() if key else None, value)])

    def poll(self, max_messages: int, timeout_s: float) -> list[RawRecord]:
        return self.batches.pop(0) if self.batches else []

    def caught_up(self) -> bool:
        return not self.batches

    def close(self) -> None:
        pass


class FakeDeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[str, int]] = []

    def reject(self, error: InvalidEventError, raw: RawRecord) -> bool:
        self.letters.append((error.field, raw.offset))
        return True

    def flush(self, timeout_s: float = 30.0) -> None:
        pass


class FakeLive:
    def __init__(self, n: int) -> None:
        self.index_for = Indices(n)
        self.vectors: dict[str, tuple[str, LiveVectors]] = {}
        self.entries: dict[str, LiveItem] = {}
        self.publishes = 0

    def publish(self, items: Sequence[LiveItem], fingerprints: dict[str, str]) -> list[LiveItem]:
        self.publishes += 1
        self.entries.update((i.item_id, i) for i in items)
        self.vectors.update(
            (i.item_id, (fingerprints[i.item_id], i.vectors))
            for i in items
            if i.vectors is not None and i.item_id in fingerprints
        )
        return list(items)


class FakeEmbedder:
    image_failures = 0

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, requests: Sequence[ContentRequest]) -> list[LiveVectors]:
        self.embedded.extend(r.item.item_id for r in requests)
        return [vec(float(r.index)) for r in requests]


class FakeViews:
    def __init__(self) -> None:
        self.items: list[ItemRecord] = []
        self.users: list[UserRecord] = []

    def write_items(self, records: Sequence[ItemRecord]) -> int:
        self.items.extend(records)
        return len(records)

    def write_users(self, records: Sequence[UserRecord]) -> int:
        self.users.extend(records)
        return len(records)


def write_export(root: Path, version: str, item_ids: list[str]) -> Path:
    directory = root / art.VERSIONS_DIR / version
    directory.mkdir(parents=True)
    meta = {
        "version": version, "created_at": "2026-11-30T00:00:00+00:00", "kind": "full", "dataset": "t",
        "training_window": {"start": "2026-11-01", "end": "2026-11-02"}, "embedding_dim": 4,
        "n_items": len(item_ids), "n_users": 0,
        "feature_spec": {"user_count_features": [], "recent_items_len": 1, "profile_fields": [],
                         "profile_vocab_sizes": [], "context_fields": [], "item_dense_features": [], "text_dim": 3,
                         "image_dim": 0, "image_model": None},
        "models": {}, "index": {"file": "item_index.faiss", "type": "IndexFlatIP"},
    }  # fmt: skip
    (directory / art.METADATA_FILE).write_text(json.dumps(meta))
    (directory / art.ITEM_IDS_FILE).write_text(json.dumps(item_ids))
    (directory / art.USER_IDS_FILE).write_text("[]")
    (directory / art.CATEGORIES_FILE).write_text(json.dumps(["<unknown>", "hats"]))
    (root / art.CURRENT_FILE).write_text(version)
    return directory


@pytest.fixture
def loop(tmp_path: Path) -> tuple[CatalogSync, FakeFeed, FakeDeadLetters, dict[str, FakeLive], FakeViews]:
    feed, dlq, views = FakeFeed(), FakeDeadLetters(), FakeViews()
    lives: dict[str, FakeLive] = {}

    def open_export(directory: Path, export: ExportCatalog) -> tuple[FakeLive, FakeEmbedder]:
        lives[export.version] = FakeLive(export.n_items)
        return lives[export.version], FakeEmbedder()

    write_export(tmp_path, "v20261130000000-aaaaaa", ["a", "b"])
    sync = CatalogSync(feed, dlq, tmp_path, open_export, views, CATALOG, export_check_s=0.0)  # type: ignore[arg-type]
    return sync, feed, dlq, lives, views


def test_the_loop_keeps_the_latest_record_dead_letters_rejects_and_ignores_purge_markers(loop) -> None:  # type: ignore[no-untyped-def]
    sync, feed, dlq, lives, views = loop
    feed.add("items", "new", it("new", 5).to_json_bytes())
    feed.add("items", "new", it("new", 1, title="older, replayed late").to_json_bytes())
    feed.add("items", "a", it("a", 1, available=False).to_json_bytes())
    feed.add("items", "zzz", it("other").to_json_bytes())  # key mismatch
    feed.add("items", "new", None)  # purge marker
    feed.add("users", "u", UserProfile(user_id="u", attributes={"s": 1}, updated_at=T0).to_json_bytes())
    sync.check_export(force=True)
    while feed.batches:
        sync.step()
    live = lives["v20261130000000-aaaaaa"]
    assert live.entries["new"].index == 3 and live.entries["new"].updated_ms == it("new", 5).updated_ms
    assert not live.entries["a"].available and live.entries["a"].vectors is None
    assert dlq.letters == [("<key>", 4)]
    assert [r.key for r in views.items] == ["new", "a"] and [r.key for r in views.users] == ["u"]  # the late one lost
    exposition = sync.metrics.exposition().decode()
    assert 'streamrec_catalog_sync_records_total{kind="items",outcome="unchanged"} 1.0' in exposition
    assert 'streamrec_catalog_sync_records_total{kind="items",outcome="purge"} 1.0' in exposition
    assert 'streamrec_catalog_sync_rejects_total{reason="key_mismatch"} 1.0' in exposition
    assert 'streamrec_catalog_sync_export_info{version="v20261130000000-aaaaaa"} 1.0' in exposition


def test_a_newer_export_gets_everything_published_again_in_its_own_numbering(loop, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sync, feed, _, lives, _ = loop
    feed.add("items", "new", it("new").to_json_bytes())
    feed.add("items", "b", it("b").to_json_bytes())
    sync.check_export(force=True)
    while feed.batches:
        sync.step()
    write_export(tmp_path, "v20261201000000-bbbbbb", ["new", "a", "b"])  # the new training learned "new"
    sync.step()
    fresh = lives["v20261201000000-bbbbbb"]
    assert fresh.entries["new"] == LiveItem("new", 1, True, it("new").updated_ms, 1)  # known now: no vectors
    assert fresh.entries["b"].index == 3
    assert sync.stats.exports == ["v20261130000000-aaaaaa", "v20261201000000-bbbbbb"]


def test_a_republish_is_spread_over_steps_of_at_most_publish_batch_items(loop) -> None:  # type: ignore[no-untyped-def]
    sync, feed, _, lives, _ = loop
    sync.publish_batch = 2
    for n in range(5):
        feed.batches.append([])
        feed.add("items", f"n{n}", it(f"n{n}").to_json_bytes())
    feed.batches = [sum(feed.batches, [])]  # all five in one poll
    sync.check_export(force=True)
    sync.step()
    live = lives["v20261130000000-aaaaaa"]
    assert len(live.entries) == 2 and sync.pending == 3
    sync.step()
    sync.step()
    assert len(live.entries) == 5 and not sync.pending


def test_changes_read_are_published_before_the_rest_of_a_republish(loop, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sync, feed, _, lives, _ = loop
    feed.batches = [[RawRecord("items", 0, n, f"n{n}".encode(), it(f"n{n}").to_json_bytes()) for n in range(6)]]
    sync.check_export(force=True)
    sync.step()
    write_export(tmp_path, "v20261201000000-bbbbbb", ["a", "b"])
    sync.publish_batch = 3
    feed.add("items", "n5", it("n5", 1, available=False).to_json_bytes())
    sync.step()  # switches, reads the change of n5: published first
    fresh = lives["v20261201000000-bbbbbb"]
    assert list(fresh.entries)[0] == "n5" and not fresh.entries["n5"].available and len(fresh.entries) == 3
    while sync.pending:
        sync.step()
    assert set(fresh.entries) == {f"n{n}" for n in range(6)}


def test_nothing_is_published_before_the_replay_reached_the_end_then_each_winner_once(loop) -> None:  # type: ignore[no-untyped-def]
    sync, feed, _, lives, _ = loop
    for minutes in (1, 3, 2):
        feed.add("items", "new", it("new", minutes, title=f"v{minutes}").to_json_bytes())
    sync.check_export(force=True)
    sync.step()
    sync.step()
    live = lives["v20261130000000-aaaaaa"]
    assert live.publishes == 0 and sync.pending == 1
    sync.step()  # the last message read: caught up
    assert live.publishes == 1 and live.entries["new"].updated_ms == it("new", 3).updated_ms


def test_availability_changes_are_published_before_a_backlog_of_items_to_embed(loop) -> None:  # type: ignore[no-untyped-def]
    sync, feed, _, lives, _ = loop
    sync.embed_batch = 1
    feed.batches = [[RawRecord("items", 0, n, f"n{n}".encode(), it(f"n{n}").to_json_bytes()) for n in range(3)]]
    feed.batches[0].append(RawRecord("items", 0, 9, b"a", it("a", available=False).to_json_bytes()))
    sync.check_export(force=True)
    sync.step()
    live = lives["v20261130000000-aaaaaa"]
    assert set(live.entries) == {"a", "n0"} and sync.pending == 2  # one embedding per step
    sync.step()
    sync.step()
    assert set(live.entries) == {"a", "n0", "n1", "n2"} and not sync.pending
