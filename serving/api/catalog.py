"""What the page shows about items and users: title, category, price and image from the catalog (items.parquet),
or at least the category from the model export; a few known users from the export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamrec import artifacts as art
from streamrec.errors import ArtifactError

CATALOG_COLUMNS = ("item_id", "title", "text", "category", "price", "image_png")
TITLE_CHARS = 90


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    title: str | None
    category: str | None
    price: float | None
    has_image: bool


def title_of(text: str) -> str | None:
    """The first sentence of the item text, at most ``TITLE_CHARS`` characters."""
    first = text.strip().split(". ", 1)[0].strip()
    if not first:
        return None
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1].rstrip() + "…"


@dataclass
class Catalog:
    items: dict[str, ItemInfo]
    images: dict[str, bytes]
    known_users: list[str]
    model_version: str
    source: str  # where the item details came from, for the page's footer

    def describe(self, item_ids: list[str]) -> list[ItemInfo]:
        return [self.items[i] for i in item_ids if i in self.items]

    @classmethod
    def load(cls, catalog_path: Path | None, export_root: Path, known_users: int) -> Catalog:
        version, users, from_export = "", [], {}
        try:
            directory = art.current_dir(export_root)
            maps = art.load_id_maps(directory)
            arrays = art.load_item_arrays(directory)
            version = directory.name
            users = maps.user_ids[:known_users]
            for item_id, cat in zip(maps.item_ids, arrays.category_idx.tolist(), strict=True):
                category = maps.categories[cat] if 0 < cat < len(maps.categories) else None
                from_export[item_id] = ItemInfo(item_id, None, category, None, False)
        except ArtifactError:
            pass
        if catalog_path is not None and catalog_path.is_file():
            items, images = read_catalog(catalog_path)
            return cls(items, images, users, version, str(catalog_path))
        return cls(from_export, {}, users, version, "model export" if from_export else "none")


def read_catalog(path: Path) -> tuple[dict[str, ItemInfo], dict[str, bytes]]:
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    if "item_id" not in present:
        raise ArtifactError(f"catalog {path} has no item_id column")
    table = pq.read_table(path, columns=[c for c in CATALOG_COLUMNS if c in present]).to_pydict()
    n = len(table["item_id"])
    none: list[None] = [None] * n
    items: dict[str, ItemInfo] = {}
    images: dict[str, bytes] = {}
    for row, item_id in enumerate(table["item_id"]):
        item_id = str(item_id)
        title = table.get("title", none)[row] or title_of(str(table.get("text", none)[row] or ""))
        price = table.get("price", none)[row]
        image = table.get("image_png", none)[row]
        if image:
            images[item_id] = bytes(image)
        category = table.get("category", none)[row]
        items[item_id] = ItemInfo(
            item_id,
            str(title) if title else None,
            str(category) if category is not None else None,
            float(price) if price is not None else None,
            bool(image),
        )
    return items, images
