"""The candidates' ranker features from an in-memory copy of the export's item arrays (no per-item lookups)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import FILTERED_CANDIDATES, ITEM_CATEGORY, ITEM_CONTENT
from serving.pipeline.export import ExportReader
from serving.pipeline.stage import Stage, Tensors
from streamrec import artifacts as art


class ItemFeatureCache:
    """Every item's ranker features in memory, row = item index (row 0 zeros): a lookup is one numpy gather."""

    def __init__(self, items: art.ItemArrays) -> None:
        n = len(items.category_idx)
        content = np.concatenate([items.dense, items.text, items.image], axis=1).astype(np.float32)
        self.category = np.concatenate([[0], items.category_idx]).astype(np.int64)
        self.content = np.vstack([np.zeros((1, content.shape[1]), np.float32), content])
        self.widths = (items.dense.shape[1], items.text.shape[1], items.image.shape[1])
        self.n_items = n

    def lookup(self, item_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """item_idx Long[B, N] -> (category Long[B, N], content Float[B, N, Q + T + I])."""
        return self.category[item_idx], self.content[item_idx]


class ItemFeatureStage(Stage):
    name = "item_features"
    inputs = (FILTERED_CANDIDATES,)
    outputs = (ITEM_CATEGORY, ITEM_CONTENT)

    def __init__(self, cache: ItemFeatureCache) -> None:
        self.cache = cache

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> ItemFeatureStage:
        return cls(ItemFeatureCache(export.items))

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        category, content = self.cache.lookup(np.asarray(batch[FILTERED_CANDIDATES.name], dtype=np.int64))
        return {ITEM_CATEGORY.name: category, ITEM_CONTENT.name: content}
