"""Top-N items by inner product with the query: FAISS on CPU, exact torch top-k on a GPU instance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.pipeline.config import StageConfig
from serving.pipeline.contract import CANDIDATES, QUERY
from serving.pipeline.export import ExportReader
from serving.pipeline.stage import Stage, Tensors


class RetrievalStage(Stage):
    """Row r of the index is item index r + 1; fewer than N hits are padded with 0."""

    name = "retrieval"
    inputs = (QUERY,)
    outputs = (CANDIDATES,)
    runs_models = True  # on a GPU instance a flat index becomes one matrix product on the device

    def __init__(self, n: int, index: Any = None, embeddings: np.ndarray | None = None, device: str = "cpu") -> None:
        self.n = n
        self.index = index
        self.device = device
        self._gpu_items: Any = None
        if index is None:
            if embeddings is None:
                raise ValueError("RetrievalStage needs a FAISS index or the item embeddings")
            import torch

            self._gpu_items = torch.as_tensor(embeddings, device=device)

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> RetrievalStage:
        n = config.serving.retrieval_candidates
        if config.device != "cpu" and export.metadata.index.type == "IndexFlatIP":
            return cls(n, embeddings=export.items.embeddings, device=config.device)
        return cls(n, index=export.faiss_index)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        query = np.ascontiguousarray(batch[QUERY.name], dtype=np.float32)
        if self._gpu_items is not None:
            import torch

            with torch.inference_mode():
                scores = torch.as_tensor(query, device=self.device) @ self._gpu_items.T
                k = min(self.n, scores.shape[1])
                rows = torch.topk(scores, k=k, dim=1).indices.cpu().numpy()
        else:
            _, rows = self.index.search(query, self.n)
        out = np.zeros((len(query), self.n), dtype=np.int64)
        out[:, : rows.shape[1]] = np.where(rows >= 0, rows + 1, 0)
        return {CANDIDATES.name: out}
