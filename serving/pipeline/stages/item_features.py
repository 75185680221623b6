"""The candidates' ranker features from in-memory copies of the item arrays (no per-item lookups): the export's,
plus the rows of the items the live catalog added."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import FILTERED_CANDIDATES, ITEM_CATEGORY, ITEM_CONTENT
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import LiveCatalog, process_catalog
from serving.pipeline.stage import Stage, Tensors


class ItemFeatureCache:
    """Every item's ranker features in memory, row = item index (row 0 zeros): a lookup is one numpy gather
    over the export's rows (and one more over the added items' rows when the batch holds any). An index the
    live catalog's snapshot does not hold yet reads as the unknown item (category 0, zero content)."""

    def __init__(self, catalog: LiveCatalog) -> None:
        self.catalog = catalog

    def lookup(self, item_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """item_idx Long[B, N] -> (category Long[B, N], content Float[B, N, Q + T + I])."""
        snap = self.catalog.snapshot
        return snap.category_of(item_idx), snap.content_of(item_idx)


class ItemFeatureStage(Stage):
    name = "item_features"
    inputs = (FILTERED_CANDIDATES,)
    outputs = (ITEM_CATEGORY, ITEM_CONTENT)

    def __init__(self, cache: ItemFeatureCache) -> None:
        self.cache = cache

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> ItemFeatureStage:
        return cls(ItemFeatureCache(process_catalog(config, export)))

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        category, content = self.cache.lookup(np.asarray(batch[FILTERED_CANDIDATES.name], dtype=np.int64))
        return {ITEM_CATEGORY.name: category, ITEM_CONTENT.name: content}
