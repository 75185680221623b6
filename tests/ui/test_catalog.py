"""What the page's cards show about items: the catalog's columns, a title from the item text, images."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from serving.api.catalog import TITLE_CHARS, Catalog, ItemInfo, read_catalog, title_of


def test_title_is_the_first_sentence_of_the_text_and_bounded() -> None:
    assert title_of("Toy Story (1995). Genres: Animation, Children's") == "Toy Story (1995)"
    assert title_of("   ") is None
    long = title_of("x" * 500)
    assert long is not None and len(long) == TITLE_CHARS and long.endswith("…")


def test_catalog_columns_become_item_details_and_images(tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    table = pa.table(
        {
            "item_id": ["a", "b"],
            "category": ["books", None],
            "price": [9.5, None],
            "text": ["A book. Long description", ""],
            "image_png": [b"\x89PNG-a", None],
        }
    )
    pq.write_table(table, path)
    items, images = read_catalog(path)
    assert items == {
        "a": ItemInfo("a", "A book", "books", 9.5, True),
        "b": ItemInfo("b", None, None, None, False),
    }
    assert images == {"a": b"\x89PNG-a"}
    with_title = tmp_path / "titled.parquet"
    pq.write_table(table.append_column("title", pa.array(["Own title", None])), with_title)
    assert read_catalog(with_title)[0]["a"].title == "Own title"


def test_without_export_or_catalog_the_page_gets_ids_only(tmp_path: Path) -> None:
    catalog = Catalog.load(None, tmp_path / "no-exports", known_users=5)
    assert catalog.items == {} and catalog.known_users == [] and catalog.source == "none"
    assert catalog.describe(["x"]) == []
