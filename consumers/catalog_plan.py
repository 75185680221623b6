"""The catalog sync's pure part: what to publish for the winning catalog records of one export version.

No I/O here. The sync feeds the records that won last-writer-wins (``streamrec.catalog.state``) and an
:class:`ExportCatalog` (the export's id maps); this module says, per item, which live entry it becomes:

* an item the export knows: its export index, ``available`` from the record, no vectors (the export's rows);
* an item the export does not know: an index handed out by the live catalog, its vectors computed from its
  content alone (:class:`ContentRequest` for the embedder), ``category_idx`` from the export's categories
  (0 for a category the export has never seen);
* a delete tombstone: not available, no vectors.

It also builds the Feast rows of the ``item_content`` and ``user_profile`` views from the records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from streamrec.artifacts import IdMaps
from streamrec.catalog.live import LiveItem, LiveVectors
from streamrec.catalog.models import CatalogItem, ItemRecord, ItemTombstone, UserProfile, UserRecord
from streamrec.catalog.snapshot import item_text
from streamrec.features import PROFILE_PREFIX

ITEM_CONTENT_UNKNOWN_CATEGORY: Final = "unknown"
#: A tombstone row is stamped just after its ``updated_at``: Feast keeps a row only when it is strictly newer,
#: and a delete wins over an upsert of the same instant (catalog order), while any later upsert (``updated_at``
#: has millisecond resolution) is newer still.
TOMBSTONE_NUDGE: Final = timedelta(microseconds=1)


@dataclass(frozen=True)
class ExportCatalog:
    """What the sync needs of one export version: its item numbering and category vocabulary."""

    version: str
    item_index: Mapping[str, int]  # item id -> export index (1-based)
    category_index: Mapping[str, int]  # category -> position in categories.json (0: unknown)
    image_model: str | None

    @classmethod
    def from_id_maps(cls, version: str, maps: IdMaps, image_model: str | None) -> ExportCatalog:
        categories = {name: i for i, name in enumerate(maps.categories) if i > 0}
        return cls(version, maps.item_index(), categories, image_model)

    @property
    def n_items(self) -> int:
        return len(self.item_index)

    def category_idx(self, category: str) -> int:
        return self.category_index.get(category, 0)


@dataclass(frozen=True)
class ContentRequest:
    """An item to embed from its content alone; ``fingerprint`` identifies that content for this export."""

    item: CatalogItem
    index: int
    category_idx: int
    fingerprint: str

    @property
    def text(self) -> str:
        return item_text(self.item)

    @property
    def price(self) -> float:
        return float(self.item.price) if self.item.price is not None else 0.0


@dataclass
class ItemPlan:
    """Entries ready to publish, and the unknown items whose vectors must be computed first."""

    ready: list[LiveItem]
    to_embed: list[ContentRequest]


def content_fingerprint(item: CatalogItem, category_idx: int, image_model: str | None) -> str:
    """Everything the content-only vectors depend on (within one export): the same content, the same vectors."""
    image = item.image if image_model else None  # without CLIP the image does not enter the vectors
    parts = [item_text(item), category_idx, item.price, image, image_model]
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def plan_items(
    records: Iterable[ItemRecord],
    export: ExportCatalog,
    index_for: Callable[[str], int],
    known_vectors: Mapping[str, tuple[str, LiveVectors]],
) -> ItemPlan:
    """Per record, its live entry or the content to embed first.

    ``index_for(item_id) -> int`` hands out the live index of an item the export does not know (stable per
    id); ``known_vectors`` are vectors already computed for an item, with the fingerprint of their content:
    reused when the content is unchanged (an availability change or a replay embeds nothing).
    """
    ready: list[LiveItem] = []
    to_embed: list[ContentRequest] = []
    for record in records:
        export_index = export.item_index.get(record.item_id)
        if isinstance(record, ItemTombstone):
            index = export_index if export_index is not None else index_for(record.item_id)
            ready.append(LiveItem(record.item_id, index, False, record.updated_ms))
            continue
        category_idx = export.category_idx(record.category)
        if export_index is not None:
            ready.append(LiveItem(record.item_id, export_index, record.available, record.updated_ms, category_idx))
            continue
        index = index_for(record.item_id)
        fingerprint = content_fingerprint(record, category_idx, export.image_model)
        cached = known_vectors.get(record.item_id)
        if cached is not None and cached[0] == fingerprint:
            ready.append(LiveItem(record.item_id, index, record.available, record.updated_ms, category_idx, cached[1]))
        else:
            to_embed.append(ContentRequest(record, index, category_idx, fingerprint))
    return ItemPlan(ready, to_embed)


def embedded_items(requests: Sequence[ContentRequest], vectors: Sequence[LiveVectors]) -> list[LiveItem]:
    """The live entries of embedded items (one vector set per request, in order)."""
    if len(requests) != len(vectors):
        raise ValueError(f"{len(vectors)} vector sets for {len(requests)} items")
    return [
        LiveItem(r.item.item_id, r.index, r.item.available, r.item.updated_ms, r.category_idx, v)
        for r, v in zip(requests, vectors, strict=True)
    ]


# ------------------------------------------------------------------------------------------------ Feast rows


def content_ref(payload: str | None) -> str:
    """Content address of an embedding's input ("" when there is none)."""
    return f"sha256:{hashlib.sha256(payload.encode()).hexdigest()}" if payload else ""


def row_timestamp(record: ItemRecord | UserRecord) -> datetime:
    updated: datetime = record.updated_at
    return updated + TOMBSTONE_NUDGE if getattr(record, "deleted", False) else updated


def item_content_row(record: ItemRecord) -> dict[str, Any]:
    """The ``item_content`` row of an item record: category, price, references to its text and image.

    A deleted item's row is blanked (unknown category, price 0, no references).
    """
    if isinstance(record, ItemTombstone):
        category, price, text_ref, image_ref = ITEM_CONTENT_UNKNOWN_CATEGORY, 0.0, "", ""
    else:
        category = record.category
        price = float(record.price) if record.price is not None else 0.0
        text_ref, image_ref = content_ref(item_text(record)), content_ref(record.image)
    return {
        "category": category,
        "price": price,
        "text_embedding_ref": text_ref,
        "image_embedding_ref": image_ref,
    }


def profile_text(value: object) -> str:
    """An attribute as the profile views hold it (text, like the snapshot's ``profile_*`` columns)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def user_profile_row(record: UserRecord, fields: Sequence[str]) -> dict[str, str]:
    """The ``user_profile`` row: each view field ``profile_<name>`` from attribute ``<name>`` ("" when absent;
    all "" for a deleted profile). Attributes the view does not declare are left out."""
    attributes: Mapping[str, object] = record.attributes if isinstance(record, UserProfile) else {}
    out: dict[str, str] = {}
    for name in fields:
        attribute = name[len(PROFILE_PREFIX) :] if name.startswith(PROFILE_PREFIX) else name
        out[name] = profile_text(attributes[attribute]) if attribute in attributes else ""
    return out
