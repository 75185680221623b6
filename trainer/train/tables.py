"""Per-item and per-user lookup tables the models read, and the training examples built from events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainer.data.history import UserHistory
from trainer.data.loading import Dataset, Events
from trainer.embeddings.content import ContentEmbeddings
from trainer.models.inputs import ItemFeatures

ITEM_DENSE_FEATURES: tuple[str, ...] = ("log_popularity", "log_price")


@dataclass
class ItemTables:
    """Row i is item index i (row 0 = padding / unknown item)."""

    category_idx: np.ndarray  # int64 [n_items + 1]
    dense: np.ndarray  # float32 [n_items + 1, Q]
    text: np.ndarray  # float32 [n_items + 1, T]
    image: np.ndarray  # float32 [n_items + 1, I]
    popularity: np.ndarray  # float32 [n_items + 1], training-window interaction counts

    @classmethod
    def build(cls, dataset: Dataset, content: ContentEmbeddings, events: Events) -> ItemTables:
        n = dataset.catalog.n_items + 1
        popularity = np.bincount(events.item, minlength=n).astype(np.float32)
        popularity[0] = 0.0
        dense = np.stack([np.log1p(popularity), np.log1p(np.maximum(dataset.catalog.price, 0.0))], axis=1)
        dense[0] = 0.0
        return cls(
            category_idx=dataset.catalog.category_idx,
            dense=dense.astype(np.float32),
            text=content.text,
            image=content.image,
            popularity=popularity,
        )

    def to(self, device: str) -> DeviceItemTables:
        return DeviceItemTables(
            category_idx=torch.as_tensor(self.category_idx, device=device),
            dense=torch.as_tensor(self.dense, device=device),
            text=torch.as_tensor(self.text, device=device),
            image=torch.as_tensor(self.image, device=device),
        )


@dataclass
class DeviceItemTables:
    """ItemTables on the training device (row i = item index i)."""

    category_idx: torch.Tensor
    dense: torch.Tensor
    text: torch.Tensor
    image: torch.Tensor

    def features(self, item_idx: torch.Tensor) -> ItemFeatures:
        """The model inputs of items ``item_idx`` (Long[S], any shape S).  -> ItemFeatures over S"""
        return ItemFeatures(
            item_idx=item_idx,
            item_cat=self.category_idx[item_idx],
            item_dense=self.dense[item_idx],
            item_text=self.text[item_idx],
            item_image=self.image[item_idx],
        )


@dataclass
class QueryFeatures:
    """Query-side inputs, one row per example (numpy, int32 where it saves memory at scale)."""

    user: np.ndarray  # int64 [n]
    recent: np.ndarray  # int32 [n, R]
    context: np.ndarray  # int8 [n, 3] is too small for hours; int16 [n, 3]
    counts: np.ndarray | None  # float32 [n, U] raw counts (ranker only)

    def __len__(self) -> int:
        return len(self.user)


def query_features_for_events(
    events: Events, rows: np.ndarray, history: UserHistory, with_counts: bool
) -> QueryFeatures:
    """Features strictly before each event in ``rows`` (point-in-time), computed in chunks to bound memory."""
    recent_parts, count_parts = [], []
    for start in range(0, len(rows), 500_000):
        chunk = rows[start : start + 500_000]
        upper = history.rank_of_event[chunk]
        user = events.user[chunk]
        recent_parts.append(history.recent_items(user, upper).astype(np.int32))
        if with_counts:
            count_parts.append(history.counts(user, upper, events.ts_ms[chunk]))
    recent = np.concatenate(recent_parts) if recent_parts else np.zeros((0, 20), np.int32)
    return QueryFeatures(
        user=events.user[rows],
        recent=recent,
        context=events.context(rows).astype(np.int16),
        counts=np.concatenate(count_parts) if with_counts and count_parts else None,
    )


def query_features_at(
    user: np.ndarray, ts_ms: np.ndarray, device: np.ndarray, history: UserHistory, with_counts: bool
) -> QueryFeatures:
    """Features of a request by ``user`` at ``ts_ms`` from ``device`` (evaluation, fine-tune hold-out)."""
    recent, counts = history.at_time(user, ts_ms)
    stub = Events(user, np.zeros_like(user), np.zeros(len(user), np.int8), ts_ms, device)
    return QueryFeatures(
        user=user,
        recent=recent.astype(np.int32),
        context=stub.context().astype(np.int16),
        counts=counts if with_counts else None,
    )
