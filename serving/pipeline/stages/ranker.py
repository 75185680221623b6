"""The DLRM ranker (TorchScript) over the candidates that remain after the filters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import (
    CONTEXT_IDX,
    FILTERED_CANDIDATES,
    ITEM_CATEGORY,
    ITEM_CONTENT,
    PROFILE_IDX,
    RANK_SCORES,
    RECENT_ITEMS,
    USER_DENSE,
    USER_IDX,
)
from serving.pipeline.export import ExportReader
from serving.pipeline.stage import Tensors, TorchModelStage, set_torch_threads
from streamrec import features as ft


class RankerStage(TorchModelStage):
    """Candidates are compacted first (valid positions, then padding) so padding is not scored; padding gets
    -inf. The model takes one dict keyed by ``streamrec.features.RANKER_INPUTS``; ITEM_CONTENT's columns are
    the item's dense, text and image features, split here by the export's widths into the three inputs. An item
    the live catalog added (index after the export's) is scored as an unknown id (0), from its content."""

    name = "ranker"
    inputs = (
        USER_IDX, PROFILE_IDX, RECENT_ITEMS, CONTEXT_IDX, USER_DENSE, FILTERED_CANDIDATES, ITEM_CATEGORY, ITEM_CONTENT,
    )  # fmt: skip
    outputs = (RANK_SCORES,)

    def __init__(self, model: Any, widths: tuple[int, int, int], n_items: int, device: str = "cpu") -> None:
        super().__init__(model, device)
        self.widths = widths
        self.n_items = n_items  # the export's: an item the live catalog added has no learned id embedding

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> RankerStage:
        set_torch_threads(config.serving.torch_threads)
        items = export.items
        widths = (items.dense.shape[1], items.text.shape[1], items.image.shape[1])
        return cls(export.ranker, widths, export.metadata.n_items, config.device)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        cand = np.asarray(batch[FILTERED_CANDIDATES.name], dtype=np.int64)
        valid = cand > 0
        counts = valid.sum(axis=1)
        scores = np.full(cand.shape, -np.inf, dtype=np.float32)
        m = int(counts.max()) if len(counts) else 0
        if m == 0:
            return {RANK_SCORES.name: scores}
        # Stable order of the valid positions first, then padding: compact to [B, m].
        order = np.argsort(~valid, axis=1, kind="stable")[:, :m]
        rows = np.arange(len(cand))[:, None]
        content = np.asarray(batch[ITEM_CONTENT.name])[rows, order]
        compact = cand[rows, order]
        q, t, _ = self.widths
        tt = self.tensor
        logits = self.call_model(
            {
                ft.MODEL_USER_IDX: tt(batch[USER_IDX.name].reshape(-1)),
                ft.MODEL_PROFILE_IDX: tt(batch[PROFILE_IDX.name]),
                ft.MODEL_RECENT_ITEMS: tt(batch[RECENT_ITEMS.name]),
                ft.MODEL_CONTEXT_IDX: tt(batch[CONTEXT_IDX.name]),
                ft.MODEL_USER_DENSE: tt(np.asarray(batch[USER_DENSE.name], dtype=np.float32)),
                ft.MODEL_ITEM_IDX: tt(np.where(compact <= self.n_items, compact, 0)),  # added items: content only
                ft.MODEL_ITEM_CATEGORY: tt(np.asarray(batch[ITEM_CATEGORY.name])[rows, order]),
                ft.MODEL_ITEM_DENSE: tt(content[:, :, :q]),
                ft.MODEL_ITEM_TEXT: tt(content[:, :, q : q + t]),
                ft.MODEL_ITEM_IMAGE: tt(content[:, :, q + t :]),
            }
        )
        logits_np = logits.float().cpu().numpy()
        keep = np.arange(m)[None, :] < counts[:, None]
        scores[rows.repeat(m, axis=1)[keep], order[keep]] = logits_np[keep]
        return {RANK_SCORES.name: scores}
