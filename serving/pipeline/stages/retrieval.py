"""Top-N items by inner product with the query: FAISS on CPU, exact torch top-k on a GPU instance; items added
by the live catalog searched exactly beside the export's index, the best of them always kept among the N,
unavailable items masked out of both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.pipeline.catalog_snapshot import CatalogSnapshot
from serving.pipeline.config import StageConfig
from serving.pipeline.contract import CANDIDATES, QUERY
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import LiveCatalog, process_catalog
from serving.pipeline.stage import Stage, Tensors


def masked_search_params(index: Any, bitmap: np.ndarray) -> tuple[Any, Any]:
    """FAISS search parameters that keep only the rows whose bit is set, with the index's own search settings
    (nprobe, efSearch): parameters of the wrong type are refused by FAISS, defaults would change its recall."""
    import faiss

    selector = faiss.IDSelectorBitmap(int(index.ntotal), faiss.swig_ptr(bitmap))
    ivf = faiss.try_extract_index_ivf(index)
    params: Any
    if ivf is not None:
        params = faiss.SearchParametersIVF()
        params.nprobe = ivf.nprobe
    elif isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from the stubs
        params.efSearch = index.hnsw.efSearch
    else:
        params = faiss.SearchParameters()
    params.sel = selector
    return params, selector  # (params, selector): the selector must outlive the search


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Float[B, M] -> positions Long[B, min(n, M)] of the best scores, best first (ties: lower position)."""
    k = min(n, scores.shape[1])
    if k == 0:
        return np.zeros((len(scores), 0), dtype=np.int64)
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    )
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    return np.take_along_axis(part, order, axis=1)


def top_n_keeping(scores: np.ndarray, n: int, kept_from: int, kept: int) -> np.ndarray:
    """Like ``top_n``, but the ``kept`` best finite scores of the columns from ``kept_from`` on are always among
    the n, in place of the lowest-scoring other columns. Float[B, M] -> positions Long[B, min(n, M)], best first."""
    if kept <= 0 or kept_from >= scores.shape[1]:
        return top_n(scores, n)
    keep = top_n(scores[:, kept_from:], min(kept, n)) + kept_from
    kept_scores = np.take_along_axis(scores, keep, axis=1)
    boosted = scores.copy()
    np.put_along_axis(boosted, keep, np.where(np.isfinite(kept_scores), np.inf, kept_scores), axis=1)
    picked = top_n(boosted, n)
    order = np.lexsort((picked, -np.take_along_axis(scores, picked, axis=1)), axis=1)
    return np.take_along_axis(picked, order, axis=1)


class RetrievalStage(Stage):
    """Row r of the export's index is item index r + 1; the live catalog's added items (indices after the
    export's) are searched exactly in the snapshot's rows and merged by score, the ``added_kept`` best of them
    kept whatever the export's scores (a content-only embedding scores below learned ones). Unavailable items
    never come out; fewer than N hits are padded with 0."""

    name = "retrieval"
    inputs = (QUERY,)
    outputs = (CANDIDATES,)
    runs_models = True  # on a GPU instance a flat index becomes one matrix product on the device

    def __init__(
        self, n: int, catalog: LiveCatalog, index: Any = None, device: str = "cpu", added_kept: int = 0
    ) -> None:
        self.n = n
        self.added_kept = added_kept
        self.catalog = catalog
        self.index = index
        self.device = device
        self._gpu_items: Any = None
        self._gpu_live: tuple[CatalogSnapshot, Any, Any] | None = None  # the snapshot's live rows and bias on device
        if index is None:
            import torch

            self._gpu_items = torch.as_tensor(catalog.snapshot.base.items.embeddings, device=device)

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> RetrievalStage:
        n, kept = config.serving.retrieval_candidates, config.serving.new_item_candidates
        catalog = process_catalog(config, export)
        if config.device != "cpu" and export.metadata.index.type == "IndexFlatIP":
            return cls(n, catalog, device=config.device, added_kept=kept)
        return cls(n, catalog, index=export.faiss_index, added_kept=kept)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        query = np.ascontiguousarray(batch[QUERY.name], dtype=np.float32)
        snap = self.catalog.snapshot
        idx = self._search_gpu(query, snap) if self._gpu_items is not None else self._search_cpu(query, snap)
        out = np.zeros((len(query), self.n), dtype=np.int64)
        out[:, : idx.shape[1]] = idx
        return {CANDIDATES.name: out}

    def _search_cpu(self, query: np.ndarray, snap: CatalogSnapshot) -> np.ndarray:
        """-> item indices Long[B, <= N] (0: no hit), best first."""
        if snap.export_bitmap is None:
            scores, rows = self.index.search(query, self.n)
        else:
            params, _selector = masked_search_params(self.index, snap.export_bitmap)
            scores, rows = self.index.search(query, self.n, params=params)
        idx = np.where(rows >= 0, rows + 1, 0)
        if len(snap.live) == 0:
            return idx
        live_scores = query @ snap.live.embeddings.T
        live_idx = np.arange(snap.n_export + 1, snap.n_items + 1, dtype=np.int64)
        live_scores[:, ~snap.available[live_idx]] = -np.inf
        all_scores = np.concatenate([np.where(rows >= 0, scores, -np.inf), live_scores], axis=1)
        all_idx = np.concatenate([idx, np.broadcast_to(live_idx, live_scores.shape)], axis=1)
        best = top_n_keeping(all_scores, self.n, kept_from=idx.shape[1], kept=self.added_kept)
        return np.where(
            np.isfinite(np.take_along_axis(all_scores, best, axis=1)), np.take_along_axis(all_idx, best, axis=1), 0
        )

    def _search_gpu(self, query: np.ndarray, snap: CatalogSnapshot) -> np.ndarray:
        import torch

        with torch.inference_mode():
            live, bias = self._device_rows(snap)
            q = torch.as_tensor(query, device=self.device)
            scores = q @ self._gpu_items.T
            if live is not None:
                scores = torch.cat([scores, q @ live.T], dim=1)
            if bias is not None:
                scores = scores + bias
            k = min(self.n, scores.shape[1])
            n_export = self._gpu_items.shape[0]
            if live is not None and self.added_kept > 0:
                # As top_n_keeping: the best added columns are lifted to +inf for the pick, then ordered by score.
                keep = torch.topk(scores[:, n_export:], k=min(self.added_kept, k, live.shape[0]), dim=1).indices
                keep = keep + n_export
                kept = torch.gather(scores, 1, keep)
                lifted = scores.scatter(1, keep, torch.where(torch.isfinite(kept), torch.inf, kept))
                cols = torch.topk(lifted, k=k, dim=1).indices
                values, order = torch.sort(torch.gather(scores, 1, cols), dim=1, descending=True, stable=True)
                cols = torch.gather(cols, 1, order)
            else:
                values, cols = torch.topk(scores, k=k, dim=1)
            found, columns = values.cpu().numpy(), cols.cpu().numpy()
        return np.where(np.isfinite(found), columns + 1, 0)  # column c is item index c + 1, export or live

    def _device_rows(self, snap: CatalogSnapshot) -> tuple[Any, Any]:
        """The snapshot's live rows and its mask (0 / -inf per item) on the device, built once per snapshot."""
        cached = self._gpu_live
        if cached is not None and cached[0] is snap:
            return cached[1], cached[2]
        import torch

        live = torch.as_tensor(snap.live.embeddings, device=self.device) if len(snap.live) else None
        bias = None
        if snap.n_unavailable:
            mask = np.where(snap.available[1:], 0.0, -np.inf).astype(np.float32)
            bias = torch.as_tensor(mask, device=self.device)
        self._gpu_live = (snap, live, bias)
        return live, bias
