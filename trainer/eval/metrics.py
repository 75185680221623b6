"""Ranking metrics over top-K lists (pure numpy)."""

from __future__ import annotations

import numpy as np

KS: tuple[int, ...] = (10, 20, 50)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first.  scores Float[B, n] -> Long[B, k]"""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def ranking_metrics(recommended: np.ndarray, truth: list[np.ndarray], ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Mean Recall@K (hits / |truth|), NDCG@K (binary gains) and HR@K over users.

    recommended Long[B, >= max(ks)] (best first), truth: per user the relevant items (non-empty).
    """
    if len(truth) == 0:
        return {}
    out: dict[str, float] = {}
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    hits = np.zeros((len(truth), recommended.shape[1]), dtype=bool)
    sizes = np.array([len(t) for t in truth], dtype=np.float64)
    for row, items in enumerate(truth):
        hits[row] = np.isin(recommended[row], items)
    for k in ks:
        top = hits[:, :k]
        n_hits = top.sum(axis=1)
        dcg = (top * discounts[:k]).sum(axis=1)
        ideal = np.array([discounts[: int(min(s, k))].sum() for s in sizes])
        out[f"recall@{k}"] = float(np.mean(n_hits / sizes))
        out[f"ndcg@{k}"] = float(np.mean(dcg / ideal))
        out[f"hr@{k}"] = float(np.mean(n_hits > 0))
    return out


def coverage(recommended: np.ndarray, n_items: int, k: int = 10) -> float:
    """Share of the catalog that appears in at least one user's top-k."""
    return float(len(np.unique(recommended[:, :k])) / max(n_items, 1))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via the rank-sum formula (ties get average ranks)."""
    labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    unique, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
