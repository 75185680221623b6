"""Feast objects of streamrec: entities, push-updated stream views and file-backed batch views.

``streamrec features apply`` loads this file and applies :func:`build_objects` (it is not imported as a
package, and not meant for ``feast apply`` by hand: source paths come from streamrec's settings).

* ``user_stream_features`` / ``item_stream_features``: written by the streaming worker through the push
  sources ``user_stream_push`` / ``item_stream_push`` (online). Their batch sources are where an offline
  backfill of the same features would go under the archive.
* ``user_profile``: the dataset's users.parquet profile columns (``profile_*``), one row per user.
* ``item_content``: category, price and references to the item's text and image embeddings.
* ``interactions_archive``: the archiver's Parquet files, registered as the offline source of raw events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Array, Float64, Int64, String

from streamrec.archive import INTERACTIONS_DIR
from streamrec.features import (
    FEAST_ITEM_CONTENT_VIEW,
    FEAST_ITEM_ENTITY_KEY,
    FEAST_ITEM_PUSH_SOURCE,
    FEAST_ITEM_STREAM_VIEW,
    FEAST_USER_ENTITY_KEY,
    FEAST_USER_PROFILE_VIEW,
    FEAST_USER_PUSH_SOURCE,
    FEAST_USER_STREAM_VIEW,
    ITEM_COUNT_FEATURES,
    USER_COUNT_FEATURES,
)
from streams.feast_schema import (
    CTR_24H,
    LAST_EVENT_MS,
    RECENT_ITEMS,
    TIMESTAMP_FIELD,
    TOP_CATEGORY,
    TRENDING,
)

# Online rows outlive any window: a quiet user keeps the features of their latest activity.
USER_TTL = timedelta(days=7)
ITEM_TTL = timedelta(days=2)
PROFILE_TTL = timedelta(0)  # profiles and content do not expire


def _file(name: str, path: Path, timestamp_field: str = TIMESTAMP_FIELD) -> FileSource:
    return FileSource(name=name, path=str(path), timestamp_field=timestamp_field, file_format=ParquetFormat())


def build_objects(archive_root: Path, offline_dir: Path, profile_fields: Sequence[str]) -> list[Any]:
    """Every Feast object of the repository; ``profile_fields`` are the users table's profile columns."""
    user = Entity(name="user", join_keys=[FEAST_USER_ENTITY_KEY], value_type=ValueType.STRING)
    item = Entity(name="item", join_keys=[FEAST_ITEM_ENTITY_KEY], value_type=ValueType.STRING)

    user_push = PushSource(
        name=FEAST_USER_PUSH_SOURCE,
        batch_source=_file("user_stream_offline", offline_dir / "user_stream_features.parquet"),
    )
    item_push = PushSource(
        name=FEAST_ITEM_PUSH_SOURCE,
        batch_source=_file("item_stream_offline", offline_dir / "item_stream_features.parquet"),
    )
    user_stream = FeatureView(
        name=FEAST_USER_STREAM_VIEW,
        entities=[user],
        ttl=USER_TTL,
        schema=[
            *(Field(name=name, dtype=Int64) for name in USER_COUNT_FEATURES),
            Field(name=RECENT_ITEMS, dtype=Array(String)),
            Field(name=TOP_CATEGORY, dtype=String),
            Field(name=LAST_EVENT_MS, dtype=Int64),
        ],
        source=user_push,
        online=True,
        description="Per-user streaming features (streams worker), windows ending at the user's latest event.",
    )
    item_stream = FeatureView(
        name=FEAST_ITEM_STREAM_VIEW,
        entities=[item],
        ttl=ITEM_TTL,
        schema=[
            *(Field(name=name, dtype=Int64) for name in ITEM_COUNT_FEATURES),
            Field(name=CTR_24H, dtype=Float64),
            Field(name=TRENDING, dtype=Float64),
            Field(name=LAST_EVENT_MS, dtype=Int64),
        ],
        source=item_push,
        online=True,
        description="Per-item streaming features (streams worker), windows ending at the item's latest event.",
    )
    user_profile = FeatureView(
        name=FEAST_USER_PROFILE_VIEW,
        entities=[user],
        ttl=PROFILE_TTL,
        schema=[Field(name=name, dtype=String) for name in profile_fields],
        source=_file("user_profile_source", offline_dir / "user_profile.parquet"),
        online=True,
        description="User profile columns of the dataset's users.parquet.",
    )
    item_content = FeatureView(
        name=FEAST_ITEM_CONTENT_VIEW,
        entities=[item],
        ttl=PROFILE_TTL,
        schema=[
            Field(name="category", dtype=String),
            Field(name="price", dtype=Float64),
            Field(name="text_embedding_ref", dtype=String),
            Field(name="image_embedding_ref", dtype=String),
        ],
        source=_file("item_content_source", offline_dir / "item_content.parquet"),
        online=True,
        description="Item category and price, and content-addressed references to its text/image embeddings.",
    )
    interactions = _file("interactions_archive", archive_root / INTERACTIONS_DIR, timestamp_field="timestamp")
    return [user, item, user_push, item_push, user_stream, item_stream, user_profile, item_content, interactions]
