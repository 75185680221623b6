"""FAISS index over item embeddings (inner product on L2-normalised vectors = cosine)."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamrec.errors import ArtifactError, ConfigError
from trainer.settings import TrainerSettings


def choose_index_type(n_items: int, settings: TrainerSettings) -> str:
    if settings.index_type != "auto":
        return settings.index_type
    return "flat" if n_items <= settings.flat_max_items else "ivf"


def build_index(embeddings: np.ndarray, settings: TrainerSettings) -> tuple[Any, str]:
    """Index with row r <-> item index r + 1.  embeddings Float[n_items, D] -> (faiss index, description)"""
    import faiss

    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = vectors.shape
    kind = choose_index_type(n, settings)
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
        name = "IndexFlatIP"
    elif kind == "ivf":
        nlist = max(1, min(settings.ivf_nlist, n // 39))  # faiss wants >= 39 points per centroid
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(settings.ivf_nprobe, nlist)
        name = f"IVF{nlist},Flat"
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        name = f"HNSW{settings.hnsw_m}"
    else:  # pragma: no cover - settings validation forbids it
        raise ConfigError(f"unknown index type {kind}", source="STREAMREC_TRAINER_INDEX_TYPE")
    index.add(vectors)
    return index, name


def write_index(index: Any, path: str) -> None:
    import faiss

    faiss.write_index(index, path)


def read_index(path: str) -> Any:
    import faiss

    try:
        return faiss.read_index(path)
    except RuntimeError as exc:
        raise ArtifactError(f"cannot read FAISS index {path}: {str(exc).splitlines()[0]}") from None


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores Float[B, k], item indices Long[B, k] offset by 1 as everywhere else)."""
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, np.where(rows >= 0, rows + 1, 0)


def brute_force(embeddings: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product with torch (GPU when present); same output as :func:`search`."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    items = torch.as_tensor(embeddings, device=device)
    q = torch.as_tensor(queries, device=device)
    scores, rows = torch.topk(q @ items.T, k=min(k, len(embeddings)), dim=1)
    return scores.cpu().numpy(), rows.cpu().numpy() + 1
