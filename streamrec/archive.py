"""The event archive: Parquet files of interaction events partitioned by event date (UTC).

Layout of a dataset / archive root::

    <root>/interactions/date=YYYY-MM-DD/<name>.parquet   interaction events, schema INTERACTIONS_SCHEMA
    <root>/items.parquet                                 item table (ITEM_COLUMNS at least)
    <root>/users.parquet                                 user table (user_id + profile_* columns)

The streaming archiver, the dataset loaders, the trainer and Feast's offline store all use it. Files are
written atomically (temporary name, fsync, rename) so a reader never sees half a file. Readers drop
duplicate ``event_id`` rows, keeping the first by timestamp: at-least-once delivery may archive twice.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamrec.errors import DataError
from streamrec.schemas.events import InteractionEvent

INTERACTIONS_DIR = "interactions"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"

INTERACTIONS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("device", pa.string()),
        ("session_id", pa.string()),
        ("locale", pa.string()),
        ("schema_version", pa.int16()),
    ]
)
INTERACTION_COLUMNS = tuple(INTERACTIONS_SCHEMA.names)

#: Columns every items.parquet has. ``image_png`` may be null when a dataset has no images.
ITEM_COLUMNS = ("item_id", "category", "price", "text", "image_png")


def events_to_frame(events: Iterable[InteractionEvent]) -> pd.DataFrame:
    rows = [
        {
            "event_id": e.event_id,
            "user_id": e.user_id,
            "item_id": e.item_id,
            "event_type": e.event_type.value,
            "timestamp": e.timestamp,
            "device": e.context.device.value,
            "session_id": e.context.session_id,
            "locale": e.context.locale,
            "schema_version": e.schema_version,
        }
        for e in events
    ]
    frame = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def to_table(frame: pd.DataFrame) -> pa.Table:
    """Coerce a frame with the interaction columns to the archive schema (raises DataError if not)."""
    missing = [c for c in INTERACTION_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"interaction frame lacks columns {missing}")
    frame = frame.loc[:, list(INTERACTION_COLUMNS)].copy()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    try:
        return pa.Table.from_pandas(frame, schema=INTERACTIONS_SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"interaction frame does not fit the archive schema: {exc}") from None


def write_atomic(table: pa.Table, path: Path) -> Path:
    """Write a Parquet file so that it appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def write_interactions(frame: pd.DataFrame, root: Path, file_stem: str) -> list[Path]:
    """Write events into ``date=`` partitions, one file per date named ``<file_stem>.parquet``."""
    if frame.empty:
        return []
    table = to_table(frame)
    dates = pd.to_datetime(frame["timestamp"], utc=True).dt.strftime("%Y-%m-%d")
    written = []
    for day in sorted(dates.unique()):
        mask = pa.array((dates == day).to_numpy())
        part = table.filter(mask)
        written.append(write_atomic(part, root / INTERACTIONS_DIR / f"date={day}" / f"{file_stem}.parquet"))
    return written


def partition_dates(root: Path) -> list[date]:
    base = root / INTERACTIONS_DIR
    if not base.is_dir():
        return []
    out = []
    for child in base.iterdir():
        if child.is_dir() and child.name.startswith("date="):
            try:
                out.append(date.fromisoformat(child.name[5:]))
            except ValueError:
                continue
    return sorted(out)


def read_interactions(
    root: Path,
    start: date | None = None,
    end: date | None = None,
    columns: Sequence[str] | None = None,
    dedupe: bool = True,
) -> pd.DataFrame:
    """Events with ``start <= date <= end`` sorted by timestamp, duplicates by event_id removed."""
    days = [d for d in partition_dates(root) if (start is None or d >= start) and (end is None or d <= end)]
    if not days:
        raise DataError(f"no archived interactions under {root / INTERACTIONS_DIR} for the requested dates")
    cols = list(columns) if columns else list(INTERACTION_COLUMNS)
    if dedupe and "event_id" not in cols:
        cols.append("event_id")
    if "timestamp" not in cols:
        cols.append("timestamp")
    tables = []
    for day in days:
        for file in sorted((root / INTERACTIONS_DIR / f"date={day.isoformat()}").glob("*.parquet")):
            try:
                tables.append(pq.read_table(file, columns=cols))
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"corrupt archive file {file}: {exc}") from None
    if not tables:
        raise DataError(f"archive partitions under {root / INTERACTIONS_DIR} hold no Parquet files")
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    frame = frame.sort_values("timestamp", kind="stable")
    if dedupe:
        frame = frame.drop_duplicates("event_id", keep="first")
    return frame.reset_index(drop=True)


def read_items(root: Path) -> pd.DataFrame:
    path = root / ITEMS_FILE
    if not path.is_file():
        raise DataError(f"item table not found: {path}")
    frame = pd.read_parquet(path)
    missing = [c for c in ITEM_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}")
    return frame


def read_users(root: Path) -> pd.DataFrame:
    path = root / USERS_FILE
    if not path.is_file():
        raise DataError(f"user table not found: {path}")
    frame = pd.read_parquet(path)
    if "user_id" not in frame.columns:
        raise DataError(f"{path} lacks column user_id")
    return frame
