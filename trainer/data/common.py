"""Writing a prepared dataset: the archive layout of :mod:`streamrec.archive` plus ``dataset.json``."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from streamrec.archive import INTERACTIONS_DIR, ITEM_COLUMNS, ITEMS_FILE, USERS_FILE, write_atomic
from streamrec.errors import DataError

DATASET_INFO_FILE = "dataset.json"
ORACLE_FILE = "oracle.npz"
#: Event types counted as positives when the dataset does not say otherwise.
DEFAULT_POSITIVE_TYPES: tuple[str, ...] = ("click", "add_to_cart", "purchase")


def reset_dataset_root(root: Path) -> None:
    """Remove what a previous prepare wrote, so that a re-prepare never mixes two generations."""
    for sub in (INTERACTIONS_DIR,):
        if (root / sub).is_dir():
            shutil.rmtree(root / sub)
    for name in (ITEMS_FILE, USERS_FILE, DATASET_INFO_FILE, ORACLE_FILE):
        (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def write_items(root: Path, items: pd.DataFrame) -> None:
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise DataError(f"item table lacks columns {missing}")
    schema = pa.schema(
        [
            ("item_id", pa.string()),
            ("category", pa.string()),
            ("price", pa.float64()),
            ("text", pa.string()),
            ("image_png", pa.binary()),
        ]
    )
    table = pa.Table.from_pandas(items.loc[:, list(ITEM_COLUMNS)], schema=schema, preserve_index=False)
    write_atomic(table, root / ITEMS_FILE)


def write_users(root: Path, users: pd.DataFrame) -> None:
    if "user_id" not in users.columns:
        raise DataError("user table lacks user_id")
    write_atomic(pa.Table.from_pandas(users, preserve_index=False), root / USERS_FILE)


def write_info(root: Path, info: dict[str, Any]) -> None:
    payload = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), **info}
    (root / DATASET_INFO_FILE).write_text(json.dumps(payload, indent=2) + "\n")


def read_info(root: Path) -> dict[str, Any]:
    """dataset.json, or an empty dict for an archive written by the streaming archiver."""
    path = root / DATASET_INFO_FILE
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"corrupt {path}: {exc}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} must hold a JSON object")
    return value
