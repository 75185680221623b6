"""The request's filters: category include / exclude and explicit item exclusions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import BLOOM_CANDIDATES, FILTERED_CANDIDATES
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import LiveCatalog, process_catalog
from serving.pipeline.stage import Stage, Tensors, options_column
from streamrec.pipeline_client import OPTIONS


class FilterStage(Stage):
    """An unknown category matches nothing (include: no items; exclude: no effect). Items the live catalog's
    snapshot does not hold, or holds as unavailable, are dropped too."""

    name = "request_filters"
    inputs = (BLOOM_CANDIDATES, OPTIONS)
    outputs = (FILTERED_CANDIDATES,)

    def __init__(self, catalog: LiveCatalog, categories: Sequence[str]) -> None:
        self.catalog = catalog
        self.category_index = {name: i for i, name in enumerate(categories)}

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> FilterStage:
        return cls(process_catalog(config, export), export.id_maps.categories)

    def _category_set(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.category_index[n] for n in names if n in self.category_index], dtype=np.int64)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        candidates = np.array(batch[BLOOM_CANDIDATES.name], dtype=np.int64, copy=True)
        snap = self.catalog.snapshot
        candidates[~snap.servable(candidates)] = 0
        for row, opts in enumerate(options_column(batch[OPTIONS.name])):
            cand = candidates[row]
            drop = np.zeros(len(cand), dtype=bool)
            if opts.include_categories or opts.exclude_categories:
                cats = snap.category_of(cand)
                if opts.include_categories:
                    drop |= ~np.isin(cats, self._category_set(opts.include_categories))
                if opts.exclude_categories:
                    drop |= np.isin(cats, self._category_set(opts.exclude_categories))
            if opts.exclude_items:
                excluded = [snap.index_of(i) for i in opts.exclude_items]
                drop |= np.isin(cand, np.array([i for i in excluded if i], dtype=np.int64))
            cand[drop] = 0
        return {FILTERED_CANDIDATES.name: candidates}
