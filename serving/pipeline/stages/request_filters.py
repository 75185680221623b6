"""The request's filters: category include / exclude and explicit item exclusions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import BLOOM_CANDIDATES, FILTERED_CANDIDATES
from serving.pipeline.export import ExportReader
from serving.pipeline.stage import Stage, Tensors, options_column
from streamrec.pipeline_client import OPTIONS


class FilterStage(Stage):
    """An unknown category matches nothing (include: no items; exclude: no effect)."""

    name = "request_filters"
    inputs = (BLOOM_CANDIDATES, OPTIONS)
    outputs = (FILTERED_CANDIDATES,)

    def __init__(self, item_index: Mapping[str, int], categories: Sequence[str], category_idx: np.ndarray) -> None:
        self.item_index = item_index
        self.category_index = {name: i for i, name in enumerate(categories)}
        self.category_of = np.concatenate([[0], category_idx]).astype(np.int64)  # by item index

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> FilterStage:
        return cls(export.item_index, export.id_maps.categories, export.items.category_idx)

    def _category_set(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.category_index[n] for n in names if n in self.category_index], dtype=np.int64)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        candidates = np.array(batch[BLOOM_CANDIDATES.name], dtype=np.int64, copy=True)
        for row, opts in enumerate(options_column(batch[OPTIONS.name])):
            cand = candidates[row]
            cats = self.category_of[cand]
            drop = np.zeros(len(cand), dtype=bool)
            if opts.include_categories:
                drop |= ~np.isin(cats, self._category_set(opts.include_categories))
            if opts.exclude_categories:
                drop |= np.isin(cats, self._category_set(opts.exclude_categories))
            if opts.exclude_items:
                excluded = [self.item_index[i] for i in opts.exclude_items if i in self.item_index]
                drop |= np.isin(cand, np.array(excluded, dtype=np.int64))
            cand[drop] = 0
        return {FILTERED_CANDIDATES.name: candidates}
