"""The pipeline's stages up to ranking. Item index 0 is padding / unknown everywhere (as in the export).

Candidates travel as INT64 [B, N] with N fixed by retrieval; stages that drop an item set it to 0, so shapes
stay fixed and requests batch together.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving.pipeline.base import Stage, Tensors, flag_column, int_column, text_column
from serving.pipeline.stores import BloomChecker, FeastUserFeatures
from streamrec import artifacts as art
from streamrec.errors import StoreUnavailableError
from streamrec.features import context_indices
from streamrec.pipeline_client import (
    BLOOM_UNAVAILABLE,
    FEATURES_UNAVAILABLE,
    FLAG_BITS,
    IN_DEVICE,
    IN_OPTIONS,
    IN_TIMESTAMP_MS,
    IN_USER_ID,
    UNKNOWN_USER,
    RecommendOptions,
)

USER_IDX = "USER_IDX"
PROFILE_IDX = "PROFILE_IDX"
CONTEXT_IDX = "CONTEXT_IDX"
CONTEXT_FLAGS = "CONTEXT_FLAGS"
RECENT_ITEMS = "RECENT_ITEMS"
USER_DENSE = "USER_DENSE"
FEATURE_FLAGS = "FEATURE_FLAGS"
QUERY = "QUERY"
CANDIDATES = "CANDIDATES"
BLOOM_CANDIDATES = "BLOOM_CANDIDATES"
BLOOM_FLAGS = "BLOOM_FLAGS"
FILTERED_CANDIDATES = "FILTERED_CANDIDATES"
ITEM_CATEGORY = "ITEM_CATEGORY"
ITEM_CONTENT = "ITEM_CONTENT"
RANK_SCORES = "RANK_SCORES"


def parse_options(array: np.ndarray) -> list[RecommendOptions]:
    """OPTIONS BYTES [B, 1] -> one RecommendOptions per row (malformed JSON: defaults, never an exception)."""
    out = []
    for raw in text_column(array):
        try:
            out.append(RecommendOptions.from_json(raw))
        except ValueError:
            out.append(RecommendOptions())
    return out


class ContextStage(Stage):
    """Context indices (device, hour, weekday) and the user's id/profile indices; anonymous and unknown users
    get index 0 and a zero profile, exactly as training masks them."""

    name = "context"
    inputs = (IN_USER_ID, IN_DEVICE, IN_TIMESTAMP_MS)
    outputs = (USER_IDX, PROFILE_IDX, CONTEXT_IDX, CONTEXT_FLAGS)

    def __init__(self, user_index: Mapping[str, int], profiles: np.ndarray) -> None:
        self.user_index = user_index
        self.profiles = profiles  # [n_users + 1, P], row 0 zeros

    @classmethod
    def from_export(cls, export: Any) -> ContextStage:
        return cls(export.user_index, export.profiles)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        users = text_column(batch[IN_USER_ID])
        devices = text_column(batch[IN_DEVICE])
        stamps = int_column(batch[IN_TIMESTAMP_MS])
        user_idx = np.array([self.user_index.get(u, 0) if u else 0 for u in users], dtype=np.int64)
        flags = flag_column(len(users))
        flags[[bool(u) and i == 0 for u, i in zip(users, user_idx, strict=True)], 0] |= FLAG_BITS[UNKNOWN_USER]
        context = np.array([context_indices(d, int(t)) for d, t in zip(devices, stamps, strict=True)], np.int64)
        return {
            USER_IDX: user_idx.reshape(-1, 1),
            PROFILE_IDX: self.profiles[user_idx],
            CONTEXT_IDX: context.reshape(-1, 3),
            CONTEXT_FLAGS: flags,
        }


class UserFeatureStage(Stage):
    """ONE Feast online read per batch: recent items (mapped to item indices) and raw count features."""

    name = "user_features"
    inputs = (IN_USER_ID,)
    outputs = (RECENT_ITEMS, USER_DENSE, FEATURE_FLAGS)

    def __init__(self, source: FeastUserFeatures | None, item_index: Mapping[str, int], spec: art.FeatureSpec) -> None:
        self.source = source
        self.item_index = item_index
        self.recent_len = spec.recent_items_len
        self.n_counts = len(spec.user_count_features)

    def warmup(self) -> None:
        if self.source is not None:
            with contextlib.suppress(StoreUnavailableError):  # flagged per request until the store answers
                self.source.ping()

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        users = text_column(batch[IN_USER_ID])
        recent = np.zeros((len(users), self.recent_len), dtype=np.int64)
        dense = np.zeros((len(users), self.n_counts), dtype=np.float32)
        flags = flag_column(len(users))
        known = [i for i, u in enumerate(users) if u]
        if known and self.source is None:
            flags[known, 0] |= FLAG_BITS[FEATURES_UNAVAILABLE]
        elif known and self.source is not None:
            try:
                rows = self.source.read([users[i] for i in known])
            except StoreUnavailableError:
                flags[known, 0] |= FLAG_BITS[FEATURES_UNAVAILABLE]
            else:
                for i, (items, counts) in zip(known, rows, strict=True):
                    idx = [self.item_index.get(item, 0) for item in items[: self.recent_len]]
                    recent[i, : len(idx)] = idx
                    dense[i, : len(counts)] = counts[: self.n_counts]
        return {RECENT_ITEMS: recent, USER_DENSE: dense, FEATURE_FLAGS: flags}


class _TorchStage(Stage):
    def __init__(self, model: Any, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        self._lock = threading.Lock()  # TorchScript modules are not re-entrant across threads on every backend

    def tensor(self, array: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True)


class QueryTowerStage(_TorchStage):
    """TorchScript query tower: (user_idx, profile_idx, recent_items, context_idx) -> L2-normalised query."""

    name = "query_tower"
    inputs = (USER_IDX, PROFILE_IDX, RECENT_ITEMS, CONTEXT_IDX)
    outputs = (QUERY,)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        t = self.tensor
        with self._lock, self.torch.inference_mode():
            query = self.model(
                t(batch[USER_IDX].reshape(-1)), t(batch[PROFILE_IDX]), t(batch[RECENT_ITEMS]), t(batch[CONTEXT_IDX])
            )
        return {QUERY: query.float().cpu().numpy()}


class RetrievalStage(Stage):
    """Top-N items by inner product: FAISS on CPU, exact torch top-k on GPU. Row r of the index is item r + 1."""

    name = "retrieval"
    inputs = (QUERY,)
    outputs = (CANDIDATES,)

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

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        query = np.ascontiguousarray(batch[QUERY], dtype=np.float32)
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
        return {CANDIDATES: out}


class BloomStage(Stage):
    """Drop items the user has seen or disliked: one BF.MEXISTS per user, one round trip per batch.

    If the store is unreachable, candidates pass through unchanged and the request is flagged."""

    name = "bloom_filter"
    inputs = (IN_USER_ID, CANDIDATES)
    outputs = (BLOOM_CANDIDATES, BLOOM_FLAGS)

    def __init__(self, checker: BloomChecker | None, item_ids: Sequence[str]) -> None:
        self.checker = checker
        self.item_ids = np.array(["", *item_ids], dtype=object)

    def warmup(self) -> None:
        if self.checker is not None:
            with contextlib.suppress(StoreUnavailableError):
                self.checker.ping()

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        users = text_column(batch[IN_USER_ID])
        candidates = np.array(batch[CANDIDATES], dtype=np.int64, copy=True)
        flags = flag_column(len(users))
        rows = [i for i, u in enumerate(users) if u]
        if rows and self.checker is None:
            flags[rows, 0] |= FLAG_BITS[BLOOM_UNAVAILABLE]
        elif rows and self.checker is not None:
            positions = [np.flatnonzero(candidates[i] > 0) for i in rows]
            requests = [
                (users[i], list(self.item_ids[candidates[i, pos]])) for i, pos in zip(rows, positions, strict=True)
            ]
            try:
                seen = self.checker.contains(requests)
            except StoreUnavailableError:
                flags[rows, 0] |= FLAG_BITS[BLOOM_UNAVAILABLE]
            else:
                for i, pos, hits in zip(rows, positions, seen, strict=True):
                    candidates[i, pos[np.asarray(hits, dtype=bool)]] = 0
        return {BLOOM_CANDIDATES: candidates, BLOOM_FLAGS: flags}


class FilterStage(Stage):
    """Request filters: category include / exclude and explicit item exclusions."""

    name = "request_filters"
    inputs = (BLOOM_CANDIDATES, IN_OPTIONS)
    outputs = (FILTERED_CANDIDATES,)

    def __init__(self, item_index: Mapping[str, int], categories: Sequence[str], category_idx: np.ndarray) -> None:
        self.item_index = item_index
        self.category_index = {name: i for i, name in enumerate(categories)}
        self.category_of = np.concatenate([[0], category_idx]).astype(np.int64)  # by item index

    def _category_set(self, names: Sequence[str]) -> np.ndarray:
        # An unknown category matches nothing (include -> no items, exclude -> no effect).
        return np.array([self.category_index[n] for n in names if n in self.category_index], dtype=np.int64)

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        candidates = np.array(batch[BLOOM_CANDIDATES], dtype=np.int64, copy=True)
        for row, opts in enumerate(parse_options(batch[IN_OPTIONS])):
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
        return {FILTERED_CANDIDATES: candidates}


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
    """Candidate item features from the in-memory cache (no per-item network lookups)."""

    name = "item_features"
    inputs = (FILTERED_CANDIDATES,)
    outputs = (ITEM_CATEGORY, ITEM_CONTENT)

    def __init__(self, cache: ItemFeatureCache) -> None:
        self.cache = cache

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        category, content = self.cache.lookup(np.asarray(batch[FILTERED_CANDIDATES], dtype=np.int64))
        return {ITEM_CATEGORY: category, ITEM_CONTENT: content}


class RankerStage(_TorchStage):
    """TorchScript DLRM over the remaining candidates (compacted, so padding is not scored); -inf for padding."""

    name = "ranker"
    inputs = (
        USER_IDX, PROFILE_IDX, RECENT_ITEMS, CONTEXT_IDX, USER_DENSE, FILTERED_CANDIDATES, ITEM_CATEGORY, ITEM_CONTENT,
    )  # fmt: skip
    outputs = (RANK_SCORES,)

    def __init__(self, model: Any, widths: tuple[int, int, int], device: str = "cpu") -> None:
        super().__init__(model, device)
        self.widths = widths

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        cand = np.asarray(batch[FILTERED_CANDIDATES], dtype=np.int64)
        valid = cand > 0
        counts = valid.sum(axis=1)
        scores = np.full(cand.shape, -np.inf, dtype=np.float32)
        m = int(counts.max()) if len(counts) else 0
        if m == 0:
            return {RANK_SCORES: scores}
        # Stable order of the valid positions first, then padding: compact to [B, m].
        order = np.argsort(~valid, axis=1, kind="stable")[:, :m]
        rows = np.arange(len(cand))[:, None]
        item_idx = cand[rows, order]
        item_cat = np.asarray(batch[ITEM_CATEGORY])[rows, order]
        content = np.asarray(batch[ITEM_CONTENT])[rows, order]
        q, t, _ = self.widths
        tt = self.tensor
        with self._lock, self.torch.inference_mode():
            logits = self.model(
                tt(batch[USER_IDX].reshape(-1)),
                tt(batch[PROFILE_IDX]),
                tt(batch[RECENT_ITEMS]),
                tt(batch[CONTEXT_IDX]),
                tt(np.asarray(batch[USER_DENSE], dtype=np.float32)),
                tt(item_idx),
                tt(item_cat),
                tt(content[:, :, :q]),
                tt(content[:, :, q : q + t]),
                tt(content[:, :, q + t :]),
            )
        logits_np = logits.float().cpu().numpy()
        keep = np.arange(m)[None, :] < counts[:, None]
        scores[rows.repeat(m, axis=1)[keep], order[keep]] = logits_np[keep]
        return {RANK_SCORES: scores}
