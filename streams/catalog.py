"""Item -> category lookup for the top-category feature, from a dataset's items.parquet."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from streamrec.archive import ITEMS_FILE
from streamrec.errors import DataError
from streams.state import UNKNOWN_CATEGORY

log = logging.getLogger(__name__)


class Catalog:
    """Callable: item id -> category; items not in the catalog are ``"unknown"``."""

    def __init__(self, categories: dict[str, str], source: str) -> None:
        self.categories = categories
        self.source = source

    def __call__(self, item_id: str) -> str:
        return self.categories.get(item_id, UNKNOWN_CATEGORY)

    def __len__(self) -> int:
        return len(self.categories)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        if not path.is_file():
            raise DataError(f"item catalog not found: {path}")
        try:
            table = pq.read_table(path, columns=["item_id", "category"])
        except Exception as exc:  # pyarrow raises several types for missing columns / corrupt files
            raise DataError(f"cannot read item catalog {path}: {exc}") from None
        ids = table.column("item_id").to_pylist()
        cats = table.column("category").to_pylist()
        return cls(
            {str(i): str(c) if c is not None else UNKNOWN_CATEGORY for i, c in zip(ids, cats, strict=True)}, str(path)
        )

    @classmethod
    def resolve(cls, configured: Path | None, archive_root: Path) -> Catalog:
        """The configured catalog (must exist), else the archive's items.parquet, else everything unknown."""
        if configured is not None:
            return cls.load(configured)
        default = archive_root / ITEMS_FILE
        if default.is_file():
            return cls.load(default)
        log.warning("no item catalog (set STREAMREC_STREAMS_CATALOG_PATH): every category is %r", UNKNOWN_CATEGORY)
        return cls({}, "<none>")
