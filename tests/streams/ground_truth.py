"""Streaming feature values recomputed with pandas, straight from the definitions in streamrec.features.

A second implementation on purpose, written the obvious (slow, whole-history) way and independent of
streams.state: the worker's incremental state must agree with it.

Input frame columns: user_id, item_id, event_type, ts_ms (int epoch ms), one row per distinct event, in
the order the worker reads them (for one user: the order produced).
"""

from __future__ import annotations

import pandas as pd

from streamrec.features import (
    BUCKET_MS,
    EVENT_TYPES,
    ITEM_COUNTED_TYPES,
    ITEM_WINDOWS,
    RECENT_ITEMS_LEN,
    TRENDING_WEIGHTS,
    USER_WINDOWS,
    trending_score,
)


def _prepared(events: pd.DataFrame) -> pd.DataFrame:
    frame = events.reset_index(drop=True).copy()
    frame["arrival"] = range(len(frame))
    frame["minute"] = frame["ts_ms"] // BUCKET_MS
    return frame


def user_truth(events: pd.DataFrame, categories: dict[str, str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for user, group in _prepared(events).groupby("user_id", sort=False):
        ref = int(group["minute"].max())
        row: dict[str, object] = {"last_event_ms": int(group["ts_ms"].max()), "events": len(group)}
        for window, length in USER_WINDOWS.items():
            inside = group[ref - group["minute"] < length]
            for etype in EVENT_TYPES:
                row[f"{etype}_count_{window}"] = int((inside["event_type"] == etype).sum())
        liked = group[group["event_type"] != "dislike"]
        newest_first = liked.sort_values(["ts_ms", "arrival"], ascending=False)
        row["recent_items"] = newest_first["item_id"].head(RECENT_ITEMS_LEN).tolist()
        day = liked[ref - liked["minute"] < USER_WINDOWS["24h"]]
        if day.empty:
            row["top_category_24h"] = None
        else:
            counts = day["item_id"].map(lambda item: categories.get(item, "unknown")).value_counts()
            row["top_category_24h"] = sorted(counts[counts == counts.max()].index)[0]
        out[str(user)] = row
    return out


def item_truth(events: pd.DataFrame) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for item, group in _prepared(events).groupby("item_id", sort=False):
        ref = int(group["minute"].max())  # the latest event of any type, dislikes included
        row: dict[str, object] = {"last_event_ms": int(group["ts_ms"].max())}
        weighted: dict[str, float] = {}
        for window, length in ITEM_WINDOWS.items():
            inside = group[ref - group["minute"] < length]
            weighted[window] = 0.0
            for etype in ITEM_COUNTED_TYPES:
                n = int((inside["event_type"] == etype).sum())
                row[f"{etype}_count_{window}"] = n
                weighted[window] += TRENDING_WEIGHTS[etype] * n
        views, clicks = int(row["view_count_24h"]), int(row["click_count_24h"])  # type: ignore[call-overload]
        row["ctr_24h"] = clicks / views if views else 0.0
        row["trending_score"] = trending_score(weighted["1h"], weighted["24h"])
        row["popularity_24h"] = weighted["24h"]
        out[str(item)] = row
    return out
