"""Catalog snapshots in the archive: the reduced catalog as Parquet, date-partitioned and versioned.

Layout under the archive root (``PathsSettings.archive_root``)::

    <root>/catalog/date=YYYY-MM-DD/version=<YYYYMMDDTHHMMSSmmmZ>/
        items.parquet            live items (available or not): ITEM_COLUMNS + the contract's own columns
        item_tombstones.parquet  deleted items: item_id, updated_at
        users.parquet            user profiles: user_id, profile_<attribute> (text), attributes (JSON), updated_at
        user_tombstones.parquet  deleted profiles: user_id, updated_at
        _MANIFEST.json           written last: a version without it is incomplete and never read

Each version is the whole catalog at the time it was written, not a delta. A version folder is an archive
root for the item and user tables, so ``streamrec.archive.read_items(version.path)`` reads it as the trainer
reads a prepared dataset: ``text`` is the title and description, ``image_png`` is empty (the picture is a
reference, in ``image``), ``price`` is null when the item has none. Tombstones are kept so that the state
restored from a snapshot orders late upserts exactly as the live state does.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from streamrec.archive import ITEM_COLUMNS, ITEMS_FILE, USERS_FILE, write_atomic
from streamrec.catalog.models import (
    CATALOG_SCHEMA_VERSION,
    CatalogItem,
    ItemRecord,
    ItemTombstone,
    UserProfile,
    UserRecord,
    UserTombstone,
)
from streamrec.catalog.state import CatalogState
from streamrec.errors import DataError
from streamrec.features import PROFILE_PREFIX

CATALOG_DIR = "catalog"
ITEM_TOMBSTONES_FILE = "item_tombstones.parquet"
USER_TOMBSTONES_FILE = "user_tombstones.parquet"
MANIFEST_FILE = "_MANIFEST.json"

_TS = pa.timestamp("ms", tz="UTC")
ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("category", pa.string()),
        ("price", pa.float64()),
        ("text", pa.string()),
        ("image_png", pa.binary()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("image", pa.string()),
        ("available", pa.bool_()),
        ("attributes", pa.string()),
        ("updated_at", _TS),
    ]
)
ITEM_TOMBSTONES_SCHEMA = pa.schema([("item_id", pa.string()), ("updated_at", _TS)])
USER_TOMBSTONES_SCHEMA = pa.schema([("user_id", pa.string()), ("updated_at", _TS)])


@dataclass(frozen=True)
class SnapshotRef:
    """One complete snapshot version."""

    path: Path
    version: str
    day: date


def item_text(item: CatalogItem) -> str:
    """The text the content embeddings are computed from: title, then description."""
    return f"{item.title}. {item.description}" if item.description else item.title


def _attributes_json(attributes: dict[str, Any]) -> str:
    return json.dumps(attributes, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def items_table(items: Iterable[CatalogItem]) -> pa.Table:
    """Live items as the snapshot's item table, sorted by id (pure)."""
    rows = sorted(items, key=lambda it: it.item_id)
    columns: dict[str, list[Any]] = {
        "item_id": [it.item_id for it in rows],
        "category": [it.category for it in rows],
        "price": [it.price for it in rows],
        "text": [item_text(it) for it in rows],
        "image_png": [None] * len(rows),
        "title": [it.title for it in rows],
        "description": [it.description for it in rows],
        "image": [it.image for it in rows],
        "available": [it.available for it in rows],
        "attributes": [_attributes_json(it.attributes) for it in rows],
        "updated_at": [it.updated_at for it in rows],
    }
    if tuple(ITEMS_SCHEMA.names[: len(ITEM_COLUMNS)]) != ITEM_COLUMNS:  # a change of the trainer's table
        raise DataError(f"snapshot item columns {ITEMS_SCHEMA.names} do not start with {ITEM_COLUMNS}")
    return pa.table(columns, schema=ITEMS_SCHEMA)


def _profile_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def users_table(users: Iterable[UserProfile]) -> pa.Table:
    """User profiles, sorted by id; every attribute also as a text ``profile_<name>`` column (pure)."""
    rows = sorted(users, key=lambda u: u.user_id)
    names = sorted({name for u in rows for name in u.attributes})
    columns: dict[str, pa.Array] = {"user_id": pa.array([u.user_id for u in rows], pa.string())}
    for name in names:
        values = [_profile_text(u.attributes[name]) if name in u.attributes else None for u in rows]
        columns[PROFILE_PREFIX + name] = pa.array(values, pa.string())
    columns["attributes"] = pa.array([_attributes_json(u.attributes) for u in rows], pa.string())
    columns["updated_at"] = pa.array([u.updated_at for u in rows], _TS)
    return pa.table(columns)


def _tombstones_table(records: Iterable[ItemTombstone | UserTombstone], id_field: str, schema: pa.Schema) -> pa.Table:
    rows = sorted(records, key=lambda r: r.key)
    return pa.table({id_field: [r.key for r in rows], "updated_at": [r.updated_at for r in rows]}, schema=schema)


def _version_name(now: datetime) -> str:
    now = now.astimezone(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"


def write_snapshot(
    root: Path, items: CatalogState[ItemRecord], users: CatalogState[UserRecord], now: datetime | None = None
) -> SnapshotRef:
    """Write a new version of the whole catalog under ``root/catalog``; the manifest last, atomically."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    day = now.date()
    base = root / CATALOG_DIR / f"date={day.isoformat()}"
    version = _version_name(now)
    path = base / f"version={version}"
    suffix = 1
    while path.exists():  # two snapshots within one millisecond
        suffix += 1
        path = base / f"version={version}-{suffix}"
    version = path.name[len("version=") :]
    live_items = [r for r in items.records.values() if isinstance(r, CatalogItem)]
    item_tombs = [r for r in items.records.values() if isinstance(r, ItemTombstone)]
    live_users = [r for r in users.records.values() if isinstance(r, UserProfile)]
    user_tombs = [r for r in users.records.values() if isinstance(r, UserTombstone)]
    write_atomic(items_table(live_items), path / ITEMS_FILE)
    write_atomic(_tombstones_table(item_tombs, "item_id", ITEM_TOMBSTONES_SCHEMA), path / ITEM_TOMBSTONES_FILE)
    write_atomic(users_table(live_users), path / USERS_FILE)
    write_atomic(_tombstones_table(user_tombs, "user_id", USER_TOMBSTONES_SCHEMA), path / USER_TOMBSTONES_FILE)
    manifest = {
        "version": version,
        "created_at": now.isoformat(timespec="milliseconds"),
        "catalog_schema_version": CATALOG_SCHEMA_VERSION,
        "items": len(live_items),
        "item_tombstones": len(item_tombs),
        "users": len(live_users),
        "user_tombstones": len(user_tombs),
    }
    _write_text_atomic(path / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return SnapshotRef(path, version, day)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def list_snapshots(root: Path) -> list[SnapshotRef]:
    """Complete versions (with a manifest), oldest first."""
    base = root / CATALOG_DIR
    out: list[SnapshotRef] = []
    if not base.is_dir():
        return out
    for day_dir in base.glob("date=*"):
        try:
            day = date.fromisoformat(day_dir.name[len("date=") :])
        except ValueError:
            continue
        for version_dir in day_dir.glob("version=*"):
            if (version_dir / MANIFEST_FILE).is_file():
                out.append(SnapshotRef(version_dir, version_dir.name[len("version=") :], day))
    return sorted(out, key=lambda ref: _sort_key(ref.version))


def _sort_key(version: str) -> tuple[str, int]:
    stem, _, suffix = version.partition("-")
    return stem, int(suffix) if suffix.isdigit() else 1


def latest_snapshot(root: Path, as_of: date | None = None) -> SnapshotRef:
    """The newest complete version, or the newest written on or before ``as_of``."""
    found = [ref for ref in list_snapshots(root) if as_of is None or ref.day <= as_of]
    if not found:
        when = f" on or before {as_of.isoformat()}" if as_of else ""
        raise DataError(f"no complete catalog snapshot under {root / CATALOG_DIR}{when}")
    return found[-1]


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"corrupt catalog snapshot file {path}: {exc}") from None
    return rows


def read_snapshot(ref: SnapshotRef) -> tuple[CatalogState[ItemRecord], CatalogState[UserRecord]]:
    """The item and user states a snapshot holds, tombstones included (the exact records written)."""
    items: CatalogState[ItemRecord] = CatalogState()
    users: CatalogState[UserRecord] = CatalogState()
    for row in _read(ref.path / ITEMS_FILE):
        fields = {k: row[k] for k in ("item_id", "title", "description", "category", "price", "image", "available")}
        record = {k: v for k, v in fields.items() if v is not None}
        items.apply(
            CatalogItem.model_validate(
                {**record, "attributes": json.loads(row["attributes"]), "updated_at": row["updated_at"]}
            )
        )
    for row in _read(ref.path / ITEM_TOMBSTONES_FILE):
        items.apply(ItemTombstone(item_id=row["item_id"], deleted=True, updated_at=row["updated_at"]))
    for row in _read(ref.path / USERS_FILE):
        users.apply(
            UserProfile(user_id=row["user_id"], attributes=json.loads(row["attributes"]), updated_at=row["updated_at"])
        )
    for row in _read(ref.path / USER_TOMBSTONES_FILE):
        users.apply(UserTombstone(user_id=row["user_id"], deleted=True, updated_at=row["updated_at"]))
    return items, users
