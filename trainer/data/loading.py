"""Read a dataset / archive root into integer-encoded arrays (index 0 = padding / unknown everywhere).

Events are read with pyarrow and dictionary-encoded, so that tens of millions of rows never become Python
strings. Duplicate ``event_id`` rows (at-least-once archiving) are dropped, keeping the earliest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from streamrec.archive import INTERACTIONS_DIR, ITEMS_FILE, partition_dates, read_items, read_users
from streamrec.catalog.snapshot import latest_snapshot
from streamrec.errors import DataError
from streamrec.features import DEVICE_VOCAB, EVENT_TYPES, PROFILE_PREFIX
from trainer.data.common import DEFAULT_POSITIVE_TYPES, read_info

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
#: 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
EPOCH_WEEKDAY = 3
DISLIKE = EVENT_TYPES.index("dislike")


def encode(values: np.ndarray | list[str], vocab: list[str]) -> np.ndarray:
    """Map ids to vocabulary indices offset by 1; unknown ids map to 0.  -> int64 [n]"""
    return pd.Index(vocab).get_indexer(pd.Index(values)).astype(np.int64) + 1


@dataclass
class Events:
    """Interaction events sorted by time; one entry per event."""

    user: np.ndarray  # int64 [n], user index (0 = unknown)
    item: np.ndarray  # int64 [n], item index >= 1
    etype: np.ndarray  # int8 [n], index into streamrec.features.EVENT_TYPES
    ts_ms: np.ndarray  # int64 [n], epoch milliseconds UTC
    device: np.ndarray  # int64 [n], index into DEVICE_VOCAB

    def __len__(self) -> int:
        return len(self.ts_ms)

    def take(self, rows: np.ndarray) -> Events:
        return Events(self.user[rows], self.item[rows], self.etype[rows], self.ts_ms[rows], self.device[rows])

    def context(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(device, hour, weekday) of each event, UTC.  -> int64 [n, 3]"""
        ts = self.ts_ms if rows is None else self.ts_ms[rows]
        dev = self.device if rows is None else self.device[rows]
        hour = (ts // MS_PER_HOUR) % 24
        weekday = (ts // MS_PER_DAY + EPOCH_WEEKDAY) % 7
        return np.stack([dev, hour, weekday], axis=1).astype(np.int64)

    def of_types(self, types: tuple[str, ...] | list[str]) -> np.ndarray:
        codes = [EVENT_TYPES.index(t) for t in types]
        return np.isin(self.etype, codes)


@dataclass
class Catalog:
    """Items; arrays have a padding row 0, so ``category_idx[item_idx]`` works directly."""

    item_ids: list[str]
    categories: list[str]  # category vocabulary, position i <-> category index i + 1
    category_idx: np.ndarray  # int64 [n_items + 1]
    price: np.ndarray  # float32 [n_items + 1]
    texts: list[str]  # [n_items]
    images: list[bytes | None]  # [n_items] PNG bytes

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


@dataclass
class UserTable:
    user_ids: list[str]
    profile_fields: list[str]
    profile_vocabs: list[list[str]]  # per field, position i <-> value index i + 1
    profile_idx: np.ndarray  # int64 [n_users + 1, P], row 0 = anonymous (zeros)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def profile_vocab_sizes(self) -> list[int]:
        return [len(v) + 1 for v in self.profile_vocabs]


@dataclass
class Dataset:
    name: str
    root: Path
    info: dict[str, Any]
    catalog: Catalog
    users: UserTable
    events: Events
    dropped_events: int = 0
    positive_types: tuple[str, ...] = DEFAULT_POSITIVE_TYPES
    retrieval_types: tuple[str, ...] = DEFAULT_POSITIVE_TYPES
    extra: dict[str, Any] = field(default_factory=dict)

    def with_events(self, events: Events) -> Dataset:
        return replace(self, events=events)


def _read_event_tables(root: Path, start: date | None, end: date | None) -> pa.Table:
    days = [d for d in partition_dates(root) if (start is None or d >= start) and (end is None or d <= end)]
    if not days:
        raise DataError(f"no archived interactions under {root / INTERACTIONS_DIR} for the requested dates")
    cols = ["event_id", "user_id", "item_id", "event_type", "timestamp", "device"]
    tables = []
    for day in days:
        for file in sorted((root / INTERACTIONS_DIR / f"date={day.isoformat()}").glob("*.parquet")):
            try:
                tables.append(pq.read_table(file, columns=cols))
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(f"corrupt archive file {file}: {exc}") from None
            except KeyError as exc:
                raise DataError(f"archive file {file} lacks column {exc}") from None
    if not tables:
        raise DataError(f"archive partitions under {root / INTERACTIONS_DIR} hold no Parquet files")
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as exc:
        raise DataError(f"archive files under {root} disagree on their schema: {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"archive under {root} holds no events for the requested dates")
    ts = pc.cast(table["timestamp"], pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    order = pc.sort_indices(ts)  # stable
    table = table.take(order)
    if pc.count_distinct(table["event_id"]).as_py() != table.num_rows:
        keep = ~pd.Series(table["event_id"].to_numpy(zero_copy_only=False)).duplicated().to_numpy()
        table = table.filter(pa.array(keep))
    return table


def _dict_codes(column: pa.ChunkedArray, vocab: list[str]) -> np.ndarray:
    """Vocabulary index (+1, 0 unknown) of each value, via Arrow's dictionary encoding.  -> int64 [n]"""
    encoded = pc.dictionary_encode(column).combine_chunks()
    mapping = encode(encoded.dictionary.to_pylist(), vocab)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return mapping[codes]


def read_catalog(root: Path) -> Catalog:
    items = read_items(root)
    if items.empty:
        raise DataError(f"item table under {root} is empty")
    if items["item_id"].duplicated().any():
        raise DataError(f"item table under {root} repeats item ids")
    categories = sorted(items["category"].fillna("unknown").astype(str).unique().tolist())
    cat_idx = encode(items["category"].fillna("unknown").astype(str).to_numpy(), categories)
    price = pd.to_numeric(items["price"], errors="coerce").fillna(0.0).to_numpy(np.float32)
    images = [None if v is None or (isinstance(v, float) and np.isnan(v)) else bytes(v) for v in items["image_png"]]
    return Catalog(
        item_ids=items["item_id"].astype(str).tolist(),
        categories=categories,
        category_idx=np.concatenate([[0], cat_idx]).astype(np.int64),
        price=np.concatenate([[0.0], price]).astype(np.float32),
        texts=items["text"].fillna("").astype(str).tolist(),
        images=images,
    )


#: ``catalog`` choices besides a path: the root's own tables when it has them, else the newest snapshot.
CATALOG_AUTO = "auto"
#: Always the newest complete catalog snapshot under the root (``<root>/catalog/date=*/version=*``).
CATALOG_LATEST = "latest"


def catalog_root(root: Path, catalog: str | None = None) -> Path:
    """Where the item and user tables of ``root`` are read.

    ``auto`` (default): ``root`` itself when it holds ``items.parquet`` (a prepared dataset), else the newest
    catalog snapshot under it (the streaming archive); ``latest``: the newest snapshot; anything else is a
    folder holding ``items.parquet`` (e.g. one snapshot version).
    """
    choice = catalog or CATALOG_AUTO
    if choice == CATALOG_AUTO:
        if (root / ITEMS_FILE).is_file():
            return root
        try:
            return latest_snapshot(root).path
        except DataError:
            raise DataError(
                f"no item table under {root}: neither {ITEMS_FILE} nor a complete catalog snapshot "
                "(write one with 'streamrec catalog snapshot', or prepare a dataset)"
            ) from None
    if choice == CATALOG_LATEST:
        return latest_snapshot(root).path
    path = Path(choice)
    if not (path / ITEMS_FILE).is_file():
        raise DataError(f"catalog folder {path} holds no {ITEMS_FILE}")
    return path


def align_catalog(catalog: Catalog, item_ids: list[str], categories: list[str]) -> Catalog:
    """The catalog in an exported model's item order, new items appended; the model's category vocabulary.

    Items of the export that the table no longer lists keep their index (empty content here: their exported
    features are used); a category the export does not know gets index 0 (unknown), as serving reads it.
    """
    position = {item: i for i, item in enumerate(catalog.item_ids)}
    known = set(item_ids)
    new_items = [item for item in catalog.item_ids if item not in known]
    order = item_ids + new_items
    source = np.array([position.get(item, -1) for item in order], dtype=np.int64)
    present = source >= 0
    table_categories = np.array(["", *catalog.categories], dtype=object)[catalog.category_idx[1:]]
    names = np.where(present, table_categories[np.maximum(source, 0)], "")
    category_idx = encode(names.astype(str), categories)
    price = np.where(present, catalog.price[1:][np.maximum(source, 0)], 0.0).astype(np.float32)
    return Catalog(
        item_ids=order,
        categories=list(categories),
        category_idx=np.concatenate([[0], category_idx]).astype(np.int64),
        price=np.concatenate([[0.0], price]).astype(np.float32),
        texts=[catalog.texts[i] if i >= 0 else "" for i in source],
        images=[catalog.images[i] if i >= 0 else None for i in source],
    )


def read_user_table(
    root: Path,
    extra_user_ids: np.ndarray | None = None,
    user_ids: list[str] | None = None,
    profile_fields: list[str] | None = None,
    profile_vocabs: list[list[str]] | None = None,
) -> UserTable:
    """Users of users.parquet (plus ids only seen in events); fixed vocabularies when given (fine-tuning)."""
    try:
        users = read_users(root)
    except DataError:
        if not (root / "users.parquet").exists():
            users = pd.DataFrame({"user_id": pd.Series([], dtype=str)})
        else:
            raise
    if profile_fields is None:
        profile_fields = sorted(c for c in users.columns if c.startswith(PROFILE_PREFIX))
    fields = profile_fields
    missing = [f for f in fields if f not in users.columns]
    if missing and len(users):
        raise DataError(f"user table under {root} lacks profile columns {missing}")
    if user_ids is None:
        known = users["user_id"].astype(str).tolist()
        seen = set(known)
        extra = [] if extra_user_ids is None else [u for u in extra_user_ids if u not in seen]
        user_ids = known + sorted(extra)
    vocabs = profile_vocabs
    if vocabs is None:
        vocabs = [sorted(users[f].fillna("unknown").astype(str).unique().tolist()) for f in fields]
    profile = np.zeros((len(user_ids) + 1, len(fields)), dtype=np.int64)
    rows = encode(users["user_id"].astype(str).to_numpy(), user_ids)
    present = rows > 0
    for j, name in enumerate(fields):
        if name in users.columns:
            values = users[name].fillna("unknown").astype(str).to_numpy()
            profile[rows[present], j] = encode(values, vocabs[j])[present]
    return UserTable(user_ids=list(user_ids), profile_fields=list(fields), profile_vocabs=vocabs, profile_idx=profile)


def load_dataset(
    root: Path,
    start: date | None = None,
    end: date | None = None,
    *,
    item_ids: list[str] | None = None,
    categories: list[str] | None = None,
    user_table: UserTable | None = None,
    catalog: str | None = None,
) -> Dataset:
    """Read events in ``[start, end]`` plus the item and user tables (of ``catalog_root(root, catalog)``).

    Events on items outside the catalog are dropped (they cannot be embedded); with ``item_ids`` and
    ``categories`` (fine-tuning an exported model) the catalog keeps the export's order and vocabulary, items
    added since come after (``extra["new_items"]`` counts them); with a fixed ``user_table`` users outside it
    become index 0, i.e. anonymous.
    """
    root = Path(root)
    info = read_info(root)
    table = _read_event_tables(root, start, end)
    tables_root = catalog_root(root, catalog)
    items = read_catalog(tables_root)
    extra: dict[str, Any] = {"catalog_root": str(tables_root)}
    if item_ids is not None:
        items = align_catalog(items, item_ids, categories if categories is not None else items.categories)
        extra["new_items"] = items.n_items - len(item_ids)
    user_col = table["user_id"]
    if user_table is None:
        event_users = pc.unique(user_col).to_numpy(zero_copy_only=False)
        user_table = read_user_table(tables_root, extra_user_ids=event_users)
    user = _dict_codes(user_col, user_table.user_ids)
    item = _dict_codes(table["item_id"], items.item_ids)
    etype = _dict_codes(table["event_type"], list(EVENT_TYPES)) - 1
    device = _dict_codes(table["device"], list(DEVICE_VOCAB)) - 1
    device[device < 0] = 0
    ts = pc.cast(table["timestamp"], pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    keep = (item > 0) & (etype >= 0)
    events = Events(
        user=user[keep],
        item=item[keep],
        etype=etype[keep].astype(np.int8),
        ts_ms=np.asarray(ts, dtype=np.int64)[keep],
        device=device[keep].astype(np.int64),
    )
    if len(events) == 0:
        raise DataError(f"no usable events under {root}: none refers to an item of the catalog")
    positive_types = info.get("positive_event_types", DEFAULT_POSITIVE_TYPES)
    return Dataset(
        name=str(info.get("name", root.name)),
        root=root,
        info=info,
        catalog=items,
        users=user_table,
        events=events,
        dropped_events=int((~keep).sum()),
        extra=extra,
        positive_types=tuple(positive_types),
        retrieval_types=tuple(
            info.get("retrieval_event_types", info.get("positive_event_types", DEFAULT_POSITIVE_TYPES))
        ),
    )
