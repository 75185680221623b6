"""Catalog snapshots: state -> Parquet -> the same state; the trainer's item table reads a version directly."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from streamrec.archive import ITEM_COLUMNS, read_items, read_users
from streamrec.catalog.codec import CatalogKind, validate_record
from streamrec.catalog.models import ItemRecord, UserRecord
from streamrec.catalog.snapshot import MANIFEST_FILE, latest_snapshot, list_snapshots, read_snapshot, write_snapshot
from streamrec.catalog.state import CatalogState
from streamrec.errors import DataError

T0 = 1_767_000_000_000


def states() -> tuple[CatalogState[ItemRecord], CatalogState[UserRecord]]:
    items: CatalogState[ItemRecord] = CatalogState()
    users: CatalogState[UserRecord] = CatalogState()
    for data in [
        {
            "item_id": "a",
            "title": "Mug",
            "description": "Blue, 350 ml",
            "category": "kitchen",
            "price": 9.5,
            "image": "https://cdn.example/a.png",
            "attributes": {"color": "blue", "ml": 350, "gift": True},
            "updated_at": T0,
        },
        {"item_id": "b", "title": "Bowl", "category": "kitchen", "available": False, "updated_at": T0 + 1},
        {"item_id": "c", "deleted": True, "updated_at": T0 + 2},
    ]:
        record = validate_record(CatalogKind.ITEMS, data)
        items.apply(record)  # type: ignore[arg-type]
    for data in [
        {"user_id": "u1", "attributes": {"segment": "gold", "vip": True}, "updated_at": T0},
        {"user_id": "u2", "attributes": {"age": 41}, "updated_at": T0 + 3},
        {"user_id": "u3", "deleted": True, "updated_at": T0 + 4},
    ]:
        users.apply(validate_record(CatalogKind.USERS, data))  # type: ignore[arg-type]
    return items, users


def test_snapshot_round_trip_restores_every_record_tombstones_included(tmp_path: Path) -> None:
    items, users = states()
    ref = write_snapshot(tmp_path, items, users, now=datetime(2026, 12, 1, 9, 30, 1, 250_000, tzinfo=UTC))
    assert ref.path == tmp_path / "catalog" / "date=2026-12-01" / "version=20261201T093001250Z"
    assert (ref.path / MANIFEST_FILE).is_file()
    restored_items, restored_users = read_snapshot(ref)
    assert restored_items.records == items.records
    assert restored_users.records == users.records


def test_a_version_is_an_archive_root_with_the_item_table_the_trainer_reads(tmp_path: Path) -> None:
    items, users = states()
    ref = write_snapshot(tmp_path, items, users)
    table = read_items(ref.path)
    assert list(table.columns[: len(ITEM_COLUMNS)]) == list(ITEM_COLUMNS)
    assert table["item_id"].tolist() == ["a", "b"], "deleted items are not in the item table"
    row = table.set_index("item_id")
    assert row.loc["a", "text"] == "Mug. Blue, 350 ml" and row.loc["b", "text"] == "Bowl"
    assert row.loc["a", "price"] == 9.5 and math.isnan(row.loc["b", "price"])
    assert row.loc["a", "image_png"] is None and row.loc["a", "image"] == "https://cdn.example/a.png"
    assert bool(row.loc["b", "available"]) is False
    profiles = read_users(ref.path).set_index("user_id")
    assert profiles.loc["u1", "profile_segment"] == "gold" and profiles.loc["u1", "profile_vip"] == "true"
    assert profiles.loc["u2", "profile_age"] == "41" and profiles.loc["u2", "profile_segment"] is None
    assert "u3" not in profiles.index


def test_latest_and_as_of_pick_complete_versions_only(tmp_path: Path) -> None:
    items, users = states()
    first = write_snapshot(tmp_path, items, users, now=datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    second = write_snapshot(tmp_path, items, users, now=datetime(2026, 12, 1, 1, 0, tzinfo=UTC))
    same_ms = write_snapshot(tmp_path, items, users, now=datetime(2026, 12, 1, 1, 0, tzinfo=UTC))
    assert same_ms.version == "20261201T010000000Z-2"
    assert [r.version for r in list_snapshots(tmp_path)] == [first.version, second.version, same_ms.version]
    assert latest_snapshot(tmp_path) == same_ms
    assert latest_snapshot(tmp_path, as_of=date(2026, 11, 30)) == first
    (same_ms.path / MANIFEST_FILE).unlink()  # as if the writer died before finishing
    assert latest_snapshot(tmp_path) == second
    with pytest.raises(DataError, match="on or before 2026-11-29"):
        latest_snapshot(tmp_path, as_of=date(2026, 11, 29))


def test_an_empty_catalog_snapshots_and_restores_empty(tmp_path: Path) -> None:
    ref = write_snapshot(tmp_path, CatalogState(), CatalogState())
    items, users = read_snapshot(ref)
    assert len(items) == len(users) == 0
    assert read_items(ref.path).empty
