"""Feature definitions shared by the streaming worker (online), the trainer (offline) and serving.

One place names every feature, its window and its encoding, so that what the trainer computes from the
archive is what the worker pushes to Feast and what serving reads back (no train/serve skew).

Windows are trailing event-time windows ending at the entity's latest event, at one-minute resolution:
an event at time ``t`` counts in window ``W`` as of reference time ``r`` when
``minute(r) - minute(t) < W / 1 min`` (``minute(x) = floor(epoch_ms(x) / 60000)``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from streamrec.schemas.events import Device, EventType

BUCKET_MS = 60_000
RECENT_ITEMS_LEN = 20

#: Window name -> length in one-minute buckets.
USER_WINDOWS: dict[str, int] = {"1h": 60, "24h": 24 * 60, "7d": 7 * 24 * 60}
ITEM_WINDOWS: dict[str, int] = {"1h": 60, "24h": 24 * 60}
TOP_CATEGORY_WINDOW = "24h"

EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)

#: Event types whose items enter a user's recent-items list (newest first): a dislike is no interest signal.
RECENT_ITEM_EVENT_TYPES: tuple[str, ...] = tuple(t for t in EVENT_TYPES if t != EventType.DISLIKE.value)

#: Per-user count features, in the order the ranker's ``user_dense`` input uses (log1p-encoded there).
USER_COUNT_FEATURES: tuple[str, ...] = tuple(
    f"{etype}_count_{window}" for window in USER_WINDOWS for etype in EVENT_TYPES
)

#: Item event types that have counters; CTR = clicks / views over 24 h.
ITEM_COUNTED_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
ITEM_COUNT_FEATURES: tuple[str, ...] = tuple(
    f"{etype}_count_{window}" for window in ITEM_WINDOWS for etype in ITEM_COUNTED_TYPES
)

#: Event-type weights of the trending score: weighted 1 h activity over the hourly 24 h average.
TRENDING_WEIGHTS: dict[str, float] = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0}

#: Device vocabulary; index 0 is also used for anything unknown.
DEVICE_VOCAB: tuple[str, ...] = (
    Device.UNKNOWN.value,
    Device.MOBILE.value,
    Device.DESKTOP.value,
    Device.TABLET.value,
)
CONTEXT_FIELDS = ("device", "hour", "weekday")

#: Feast names: feature views and entities (see feature_repo/).
FEAST_USER_STREAM_VIEW = "user_stream_features"
FEAST_ITEM_STREAM_VIEW = "item_stream_features"
FEAST_USER_PUSH_SOURCE = "user_stream_push"
FEAST_ITEM_PUSH_SOURCE = "item_stream_push"
FEAST_USER_ENTITY_KEY = "user_id"
FEAST_ITEM_ENTITY_KEY = "item_id"
#: Field of the user stream view: the last RECENT_ITEMS_LEN item ids, newest first (dislikes excluded).
FEAST_USER_RECENT_ITEMS_FIELD = "recent_items"
#: The catalog's views (batch-loaded from the catalog snapshot, kept current by the catalog sync).
FEAST_USER_PROFILE_VIEW = "user_profile"
FEAST_ITEM_CONTENT_VIEW = "item_content"
#: Column prefix of a user attribute in users.parquet and in the user profile view: ``profile_<attribute>``.
PROFILE_PREFIX = "profile_"


#: Named inputs of the exported TorchScript models: each model's forward takes one ``Dict[str, Tensor]`` keyed
#: by these names (B requests, N candidates; shapes as the trainer's model docstrings give them), so the
#: trainer, the export and the serving stages share the names instead of a positional order.
MODEL_USER_IDX = "user_idx"  # Long[B]
MODEL_PROFILE_IDX = "profile_idx"  # Long[B, P]
MODEL_RECENT_ITEMS = "recent_items"  # Long[B, R]
MODEL_CONTEXT_IDX = "context_idx"  # Long[B, 3] (device, hour, weekday)
MODEL_USER_DENSE = "user_dense"  # Float[B, U] raw counts
MODEL_ITEM_IDX = "item_idx"  # Long[B, N]
MODEL_ITEM_CATEGORY = "item_cat"  # Long[B, N]
MODEL_ITEM_DENSE = "item_dense"  # Float[B, N, Q]
MODEL_ITEM_TEXT = "item_text"  # Float[B, N, T]
MODEL_ITEM_IMAGE = "item_image"  # Float[B, N, I]
QUERY_TOWER_INPUTS: tuple[str, ...] = (MODEL_USER_IDX, MODEL_PROFILE_IDX, MODEL_RECENT_ITEMS, MODEL_CONTEXT_IDX)
RANKER_INPUTS: tuple[str, ...] = (
    *QUERY_TOWER_INPUTS,
    MODEL_USER_DENSE,
    MODEL_ITEM_IDX,
    MODEL_ITEM_CATEGORY,
    MODEL_ITEM_DENSE,
    MODEL_ITEM_TEXT,
    MODEL_ITEM_IMAGE,
)
#: The content-only item encoder (a new item, no learned id embedding): M items in, per-item rows out.
MODEL_ITEM_PRICE = "item_price"  # Float[M] price in the catalog's currency (negative / NaN read as 0)
MODEL_TEXT_EMBEDDING = "text_embedding"  # Float[M, 384] all-MiniLM-L6-v2 of the item text, L2-normalised
MODEL_IMAGE_EMBEDDING = "image_embedding"  # Float[M, C] CLIP image embedding, L2-normalised (C = 0: no CLIP)
MODEL_ITEM_EMBEDDING = "item_embedding"  # Float[M, D] item-tower vector, the row to add to the FAISS index
CONTENT_ENCODER_INPUTS: tuple[str, ...] = (
    MODEL_ITEM_CATEGORY,
    MODEL_ITEM_PRICE,
    MODEL_TEXT_EMBEDDING,
    MODEL_IMAGE_EMBEDDING,
)
#: Outputs (one dict): the index row and the ranker's item-feature rows (item_features.npz columns).
CONTENT_ENCODER_OUTPUTS: tuple[str, ...] = (MODEL_ITEM_EMBEDDING, MODEL_ITEM_DENSE, MODEL_ITEM_TEXT, MODEL_ITEM_IMAGE)
#: Context vocabulary sizes (device, hour of day, weekday), in CONTEXT_FIELDS order.
N_HOURS = 24
N_WEEKDAYS = 7
CONTEXT_VOCAB_SIZES: tuple[int, int, int] = (len(DEVICE_VOCAB), N_HOURS, N_WEEKDAYS)


def device_index(device: str) -> int:
    try:
        return DEVICE_VOCAB.index(device)
    except ValueError:
        return 0


def context_indices(device: str, epoch_ms: int) -> tuple[int, int, int]:
    """(device index, hour of day 0-23, weekday 0=Monday) in UTC."""
    when = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return device_index(device), when.hour, when.weekday()


def trending_score(weighted_1h: float, weighted_24h: float) -> float:
    """How much hotter the last hour is than the 24 h hourly average (1.0 = as usual)."""
    return (weighted_1h + 1.0) / (weighted_24h / 24.0 + 1.0)
