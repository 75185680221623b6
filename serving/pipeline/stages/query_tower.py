"""The Two-Tower model's query side (TorchScript): user and context -> L2-normalised query embedding."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import CONTEXT_IDX, PROFILE_IDX, QUERY, RECENT_ITEMS, USER_IDX
from serving.pipeline.export import ExportReader
from serving.pipeline.stage import Tensors, TorchModelStage, set_torch_threads
from streamrec import features as ft


class QueryTowerStage(TorchModelStage):
    """The model takes one dict keyed by ``streamrec.features.QUERY_TOWER_INPUTS``."""

    name = "query_tower"
    inputs = (USER_IDX, PROFILE_IDX, RECENT_ITEMS, CONTEXT_IDX)
    outputs = (QUERY,)

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> QueryTowerStage:
        set_torch_threads(config.serving.torch_threads)
        return cls(export.query_tower, config.device)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        t = self.tensor
        query = self.call_model(
            {
                ft.MODEL_USER_IDX: t(batch[USER_IDX.name].reshape(-1)),
                ft.MODEL_PROFILE_IDX: t(batch[PROFILE_IDX.name]),
                ft.MODEL_RECENT_ITEMS: t(batch[RECENT_ITEMS.name]),
                ft.MODEL_CONTEXT_IDX: t(batch[CONTEXT_IDX.name]),
            }
        )
        return {QUERY.name: query.float().cpu().numpy()}
