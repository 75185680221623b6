"""The final catalog recomputed with pandas, the obvious way: sort every record by its version, keep the last.

A second implementation on purpose, independent of streamrec.catalog.state: the order is spelled out here
from the contract's text (latest updated_at; at a tie a delete beats an upsert; between two upserts at the
same instant, the greater sorted-key JSON of the record wins).

Input frame columns: id, updated_ms (int), deleted (bool), content (the record's sorted-key JSON, str).
"""

from __future__ import annotations

import pandas as pd


def final_catalog(records: pd.DataFrame) -> dict[str, str]:
    """id -> content of the winning record (tombstones included)."""
    if records.empty:
        return {}
    frame = records.copy()
    frame["content_bytes"] = frame["content"].map(lambda text: text.encode())
    ordered = frame.sort_values(["id", "updated_ms", "deleted", "content_bytes"], kind="stable")
    last = ordered.groupby("id", sort=False).tail(1)
    return dict(zip(last["id"], last["content"], strict=True))


def live_ids(records: pd.DataFrame) -> set[str]:
    if records.empty:
        return set()
    frame = records.sort_values(["id", "updated_ms", "deleted", "content"], kind="stable")
    last = frame.groupby("id", sort=False).tail(1)
    return set(last.loc[~last["deleted"], "id"])
