"""The items a serving process can return, as one immutable snapshot: the export's own rows plus the items the
live catalog added since (:mod:`streamrec.catalog.live`), and which of them are available.

Every stage reads the snapshot current when its batch starts and never sees it change; the live-catalog
follower (:mod:`serving.pipeline.live_catalog`) builds the next one with :func:`apply_entries` and swaps it
in. Snapshots only grow: an index, once known, keeps its item, so a later snapshot answers every question an
earlier one could.

Numbering is the export's: item index i (1-based) is FAISS row i - 1, row 0 of every per-item array here is
the unknown item (id ``""``, category 0, zero content). The export's items keep indices 1..n_export and their
rows for good (a snapshot shares them, never copies them); an added item has an index after n_export, handed
out centrally so that every process agrees, and its rows live in a small overlay that is copied on write.
An index the overlay has not reached yet is unknown: lookups answer the unknown item, ``known`` is False.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from streamrec import artifacts as art
from streamrec.catalog.live import LiveItem, latest_by_item


class ExportRows:
    """The export's per-item arrays, row = item index (row 0 the unknown item); derived arrays built on first use,
    so that a stage process pays only for what its stage reads."""

    def __init__(self, item_ids: Sequence[str], items: art.ItemArrays, n_categories: int) -> None:
        self.n = len(item_ids)
        if len(items.category_idx) != self.n:
            raise ValueError(f"{len(item_ids)} item ids for {len(items.category_idx)} item rows")
        self.items = items
        self.n_categories = n_categories
        self.item_index: dict[str, int] = {item: i + 1 for i, item in enumerate(item_ids)}
        self.item_ids = np.array(["", *item_ids], dtype=object)
        self.category = np.concatenate([[0], items.category_idx]).astype(np.int64)
        self.widths = (items.dense.shape[1], items.text.shape[1], items.image.shape[1])
        self.dim = int(items.embeddings.shape[1])

    @cached_property
    def content(self) -> np.ndarray:
        """Float[n + 1, Q + T + I]: dense, text and image features, as the ranker reads them."""
        items = self.items
        rows = np.concatenate([items.dense, items.text, items.image], axis=1).astype(np.float32)
        return np.vstack([np.zeros((1, rows.shape[1]), np.float32), rows])

    @cached_property
    def unit(self) -> np.ndarray:
        """Float[n + 1, D]: L2-normalised item embeddings (reranking's similarities)."""
        return np.vstack([np.zeros((1, self.dim), np.float32), unit_rows(self.items.embeddings)])


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class LiveRows:
    """The added items' rows; position p is item index n_export + 1 + p. Never mutated once in a snapshot."""

    item_ids: np.ndarray  # object [m]; "" for a gap not filled yet
    category: np.ndarray  # int64 [m]
    content: np.ndarray  # float32 [m, Q + T + I]
    embeddings: np.ndarray  # float32 [m, D], the retrieval rows
    unit: np.ndarray  # float32 [m, D], L2-normalised

    @classmethod
    def empty(cls, content_width: int, dim: int) -> LiveRows:
        return cls(
            np.zeros(0, dtype=object),
            np.zeros(0, np.int64),
            np.zeros((0, content_width), np.float32),
            np.zeros((0, dim), np.float32),
            np.zeros((0, dim), np.float32),
        )

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclass(frozen=True)
class CatalogSnapshot:
    """One consistent view of the servable items (see the module docstring)."""

    base: ExportRows
    live: LiveRows
    live_index: Mapping[str, int]  # added item id -> its index
    available: np.ndarray  # bool [n_items + 1]; row 0 False
    export_bitmap: np.ndarray | None  # uint8: FAISS rows still available, bit r = row r; None: every export row is
    generation: int = 0

    @classmethod
    def of_export(cls, base: ExportRows) -> CatalogSnapshot:
        available = np.ones(base.n + 1, dtype=bool)
        available[0] = False
        return cls(base, LiveRows.empty(sum(base.widths), base.dim), {}, available, None)

    @property
    def n_export(self) -> int:
        return self.base.n

    @property
    def n_items(self) -> int:
        return self.base.n + len(self.live)

    @property
    def n_unavailable(self) -> int:
        return int(self.n_items - np.count_nonzero(self.available))

    def known(self, idx: np.ndarray) -> np.ndarray:
        """Bool like ``idx``: an item index this snapshot holds (0, negatives and indices beyond it: False)."""
        idx = np.asarray(idx)
        return (idx > 0) & (idx <= self.n_items)

    def servable(self, idx: np.ndarray) -> np.ndarray:
        """Bool like ``idx``: known and available (may be returned)."""
        idx = np.asarray(idx, dtype=np.int64)
        known = self.known(idx)
        return known & self.available[np.where(known, idx, 0)]

    def _gather(self, base_rows: np.ndarray, live_rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        in_base = (idx > 0) & (idx <= self.base.n)
        out = base_rows[np.where(in_base, idx, 0)]  # a copy: safe to fill in
        pos = idx - self.base.n - 1
        in_live = (pos >= 0) & (pos < len(self.live))
        if in_live.any():
            out[in_live] = live_rows[pos[in_live]]
        return out

    def item_ids_of(self, idx: np.ndarray) -> np.ndarray:
        """Object array like ``idx``: item ids, ``""`` for an unknown index."""
        return self._gather(self.base.item_ids, self.live.item_ids, idx)

    def category_of(self, idx: np.ndarray) -> np.ndarray:
        return self._gather(self.base.category, self.live.category, idx)

    def content_of(self, idx: np.ndarray) -> np.ndarray:
        """Long[...] -> Float[..., Q + T + I]."""
        return self._gather(self.base.content, self.live.content, idx)

    def unit_of(self, idx: np.ndarray) -> np.ndarray:
        """Long[...] -> Float[..., D], L2-normalised embeddings."""
        return self._gather(self.base.unit, self.live.unit, idx)

    def index_of(self, item_id: str) -> int:
        """The item's index, 0 if unknown."""
        return self.base.item_index.get(item_id) or self.live_index.get(item_id, 0)


@dataclass(frozen=True)
class Applied:
    """What one :func:`apply_entries` call did."""

    snapshot: CatalogSnapshot
    added: int = 0  # added items' rows written (new or replaced)
    availability: int = 0  # availability changes
    skipped: tuple[str, ...] = field(default=())  # one reason per entry left out


def _check_vectors(entry: LiveItem, base: ExportRows) -> str | None:
    v = entry.vectors
    if v is None:
        return None
    got = (v.embedding.shape, v.dense.shape, v.text.shape, v.image.shape)
    q, t, i = base.widths
    want = ((base.dim,), (q,), (t,), (i,))
    if got != want:
        return f"{entry.item_id}: vector widths {got} do not match the export's {want}"
    if not all(np.isfinite(p).all() for p in v.parts()):
        return f"{entry.item_id}: vectors hold non-finite values"
    return None


def apply_entries(snapshot: CatalogSnapshot, entries: Iterable[LiveItem]) -> Applied:
    """The snapshot with the live catalog's entries applied; ``snapshot`` itself is left as it was.

    * an index after the export's with vectors: the item's rows, appended in index order (a gap before it is
      padded with unknown, unavailable rows until its own entry arrives) or replaced if already there;
    * any known index: its availability from the entry (``available=False`` masks it everywhere);
    * the export's rows are never replaced (an export item's entry carries only its availability);
    * entries that contradict the numbering (an index held by another id, an export id under a new index,
      wrong vector widths, an index after the export's with no vectors and no rows yet) are skipped, named.
    """
    base = snapshot.base
    skipped: list[str] = []
    rows: dict[int, LiveItem] = {}
    flags: list[tuple[int, bool]] = []
    live_ids = snapshot.live.item_ids
    for entry in sorted(latest_by_item(entries).values(), key=lambda e: e.index):
        idx = entry.index
        if idx < 1:
            skipped.append(f"{entry.item_id}: index {idx} is not an item index")
        elif idx <= base.n:
            if base.item_ids[idx] != entry.item_id:
                skipped.append(f"{entry.item_id}: index {idx} is the export's {base.item_ids[idx]!r}")
            else:
                flags.append((idx, entry.available))
        elif entry.item_id in base.item_index:
            skipped.append(f"{entry.item_id}: in the export as {base.item_index[entry.item_id]}, not {idx}")
        elif entry.vectors is not None:
            if (reason := _check_vectors(entry, base)) is not None:
                skipped.append(reason)
            else:
                rows[idx] = entry
                flags.append((idx, entry.available))
        elif idx <= snapshot.n_items and live_ids[idx - base.n - 1] == entry.item_id:
            flags.append((idx, entry.available))
        else:
            skipped.append(f"{entry.item_id}: index {idx} has no rows yet and the entry carries no vectors")
    live = _with_rows(snapshot, rows) if rows else snapshot.live
    live_index = _with_ids(snapshot, rows) if rows else snapshot.live_index
    available = snapshot.available
    if len(live) > len(snapshot.live):  # gaps start unavailable; the entries' own flags follow
        available = np.concatenate([available, np.zeros(len(live) - len(snapshot.live), dtype=bool)])
    changes = [(i, a) for i, a in flags if available[i] != a]
    if changes and available is snapshot.available:
        available = available.copy()
    for i, a in changes:
        available[i] = a
    export_bitmap = snapshot.export_bitmap
    if any(i <= base.n for i, _ in changes):
        export_rows = available[1 : base.n + 1]
        export_bitmap = None if export_rows.all() else np.packbits(export_rows, bitorder="little")
    if not rows and not changes:
        return Applied(snapshot, skipped=tuple(skipped))
    new = replace(
        snapshot,
        live=live,
        live_index=live_index,
        available=available,
        export_bitmap=export_bitmap,
        generation=snapshot.generation + 1,
    )
    return Applied(new, added=len(rows), availability=len(changes), skipped=tuple(skipped))


def _with_rows(snapshot: CatalogSnapshot, rows: Mapping[int, LiveItem]) -> LiveRows:
    """The overlay grown to the highest index in ``rows`` (gaps zero, id ``""``) with ``rows`` written in."""
    base, old = snapshot.base, snapshot.live
    m = max(len(old), max(rows) - base.n)

    def grown(array: np.ndarray) -> np.ndarray:
        out = np.zeros((m, *array.shape[1:]), dtype=array.dtype)
        if array.dtype == object:
            out[:] = ""
        out[: len(array)] = array
        return out

    ids, category, content = grown(old.item_ids), grown(old.category), grown(old.content)
    embeddings, unit = grown(old.embeddings), grown(old.unit)
    for idx, entry in rows.items():
        v = entry.vectors
        if v is None:  # apply_entries only hands over entries with vectors
            continue
        p = idx - base.n - 1
        ids[p] = entry.item_id
        category[p] = entry.category_idx if 0 <= entry.category_idx < base.n_categories else 0
        content[p] = np.concatenate([v.dense, v.text, v.image])
        embeddings[p] = v.embedding
    positions = np.array([idx - base.n - 1 for idx in rows], dtype=np.int64)
    unit[positions] = unit_rows(embeddings[positions])
    return LiveRows(ids, category, content, embeddings, unit)


def _with_ids(snapshot: CatalogSnapshot, rows: Mapping[int, LiveItem]) -> dict[str, int]:
    index = dict(snapshot.live_index)
    live_ids = snapshot.live.item_ids
    for idx, entry in rows.items():
        p = idx - snapshot.base.n - 1
        previous = live_ids[p] if p < len(live_ids) else ""
        if previous and previous != entry.item_id and index.get(previous) == idx:
            del index[previous]  # the index was handed to another id: the newest entry holds it
        index[entry.item_id] = idx
    return index
