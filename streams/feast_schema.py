"""Names and row layout of the Feast feature views (no Feast import: the worker's hot path builds rows here).

``feature_repo/definitions.py`` declares the Feast objects from these names; the worker turns
:class:`~streams.state.UserFeatures` / :class:`~streams.state.ItemFeatures` into rows with them. Count
feature names and view names come from :mod:`streamrec.features`, shared with the trainer and serving.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from streamrec.features import (
    FEAST_ITEM_ENTITY_KEY,
    FEAST_USER_ENTITY_KEY,
    FEAST_USER_RECENT_ITEMS_FIELD,
    ITEM_COUNT_FEATURES,
    USER_COUNT_FEATURES,
)
from streams.state import ItemFeatures, UserFeatures

#: Timestamp column of every source and pushed frame: when the row's values were computed.
TIMESTAMP_FIELD = "event_timestamp"

RECENT_ITEMS = FEAST_USER_RECENT_ITEMS_FIELD  # item ids, newest first (dislikes excluded), at most RECENT_ITEMS_LEN
TOP_CATEGORY = "top_category_24h"  # most frequent category over 24 h ("" when none)
LAST_EVENT_MS = "last_event_ms"  # event time of the entity's latest event, epoch milliseconds
CTR_24H = "ctr_24h"  # clicks / views over 24 h, 0 without views
TRENDING = "trending_score"  # streamrec.features.trending_score of the weighted 1 h vs 24 h activity

USER_STREAM_FIELDS: tuple[str, ...] = (*USER_COUNT_FEATURES, RECENT_ITEMS, TOP_CATEGORY, LAST_EVENT_MS)
ITEM_STREAM_FIELDS: tuple[str, ...] = (*ITEM_COUNT_FEATURES, CTR_24H, TRENDING, LAST_EVENT_MS)

#: Batch (offline-sourced) views.
ITEM_CONTENT_FIELDS: tuple[str, ...] = ("category", "price", "text_embedding_ref", "image_embedding_ref")


def user_row(user_id: str, feats: UserFeatures, computed_at: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {FEAST_USER_ENTITY_KEY: user_id, TIMESTAMP_FIELD: computed_at}
    row.update(zip(USER_COUNT_FEATURES, feats.counts, strict=True))
    row[RECENT_ITEMS] = list(feats.recent_items)
    row[TOP_CATEGORY] = feats.top_category or ""
    row[LAST_EVENT_MS] = feats.last_event_ms
    return row


def item_row(item_id: str, feats: ItemFeatures, computed_at: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {FEAST_ITEM_ENTITY_KEY: item_id, TIMESTAMP_FIELD: computed_at}
    row.update(zip(ITEM_COUNT_FEATURES, feats.counts, strict=True))
    row[CTR_24H] = float(feats.ctr_24h)
    row[TRENDING] = float(feats.trending)
    row[LAST_EVENT_MS] = feats.last_event_ms
    return row
