"""The last stage: rerank the ranked candidates and cut to top-K.

Deterministic by default (sort by ranker score, ties by item index). Optional, per request or by setting:

* diversity (MMR, Carbonell & Goldstein 1998) over item embeddings: greedily pick
  ``argmax (1 - d) * relevance - d * max cosine similarity to the items already picked``;
* business rule ``max_per_category``: at most that many items of one category (relaxed if too few remain);
* temperature softmax sampling without replacement (Gumbel top-k), seeded when the request gives a seed;
* new-item slots (cold-start exploration): an item added to the live catalog after the export has no learned id
  and no popularity, so the ranker puts it low even when retrieval found it by content for this user; up to
  ``new_item_slots`` such candidates take the last places of the answer, in retrieval order: the content-only
  Two-Tower score matches new items to users better than the ranker does on an unknown id (the cold-start
  evaluation: Recall@10 on new items 0.716 by retrieval, 0.648 after the ranker).

Scores returned are the ranker's probabilities (sigmoid of the logit); the order is the reranked order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.pipeline.catalog_snapshot import CatalogSnapshot
from serving.pipeline.config import StageConfig
from serving.pipeline.contract import (
    BLOOM_FLAGS,
    CONTEXT_FLAGS,
    FEATURE_FLAGS,
    FILTERED_CANDIDATES,
    ITEM_CATEGORY,
    RANK_SCORES,
)
from serving.pipeline.export import ExportReader
from serving.pipeline.live_catalog import LiveCatalog, process_catalog
from serving.pipeline.stage import Stage, Tensors, int_column, options_column
from streamrec.pipeline_client import (
    FLAG_BITS,
    FLAGS,
    ITEM_IDS,
    ITEM_SCORES,
    MODEL_VERSION,
    OPTIONS,
    SAMPLED,
    K,
    RecommendOptions,
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def mmr_order(relevance: np.ndarray, embeddings: np.ndarray, k: int, diversity: float) -> list[int]:
    """Greedy MMR over a pool. relevance Float[M] (any scale), embeddings Float[M, D] L2-normalised -> positions."""
    m = len(relevance)
    if m == 0 or k <= 0:
        return []
    span = float(relevance.max() - relevance.min())
    rel = (relevance - relevance.min()) / span if span > 0 else np.ones(m)
    picked: list[int] = []
    max_sim = np.zeros(m)
    available = np.ones(m, dtype=bool)
    for _ in range(min(k, m)):
        objective = np.where(available, (1.0 - diversity) * rel - diversity * max_sim, -np.inf)
        best = int(np.argmax(objective))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, embeddings @ embeddings[best])
    return picked


def cap_per_category(order: Sequence[int], categories: np.ndarray, cap: int, k: int) -> list[int]:
    """Keep ``order`` but allow at most ``cap`` items per category; fill from the overflow if too few remain."""
    if cap <= 0:
        return list(order)[:k]
    counts: dict[int, int] = {}
    kept, overflow = [], []
    for pos in order:
        cat = int(categories[pos])
        if counts.get(cat, 0) < cap:
            counts[cat] = counts.get(cat, 0) + 1
            kept.append(pos)
            if len(kept) == k:
                break
        else:
            overflow.append(pos)
    return (kept + overflow)[:k]


def promote_added(chosen: Sequence[int], order: Sequence[int], added: np.ndarray, slots: int, k: int) -> list[int]:
    """``chosen`` (positions, best first, at most k) with up to ``slots`` added items in it: the first added
    positions of ``order`` not already chosen take the last places. added Bool[M] by position."""
    out = list(chosen)
    missing = slots - int(sum(bool(added[p]) for p in out))
    if missing <= 0:
        return out
    taken = set(out)
    promote = [p for p in order if added[p] and p not in taken][:missing]
    for p in promote:
        if len(out) < k:
            out.append(p)
            continue
        # Replace the lowest-placed item that is not itself an added item.
        for at in range(len(out) - 1, -1, -1):
            if not added[out[at]]:
                del out[at]
                out.append(p)
                break
    return out


class RerankStage(Stage):
    name = "rerank"
    inputs = (
        FILTERED_CANDIDATES, RANK_SCORES, ITEM_CATEGORY, K, OPTIONS, CONTEXT_FLAGS, FEATURE_FLAGS, BLOOM_FLAGS,
    )  # fmt: skip
    outputs = (ITEM_IDS, ITEM_SCORES, MODEL_VERSION, FLAGS)

    def __init__(
        self,
        catalog: LiveCatalog,
        version: str,
        *,
        diversity: float = 0.0,
        max_per_category: int = 0,
        temperature: float = 0.0,
        mmr_pool: int = 50,
        max_k: int = 100,
        new_item_slots: int = 0,
    ) -> None:
        self.catalog = catalog
        self.new_item_slots = new_item_slots
        self.version = version
        self.diversity = diversity
        self.max_per_category = max_per_category
        self.temperature = temperature
        self.mmr_pool = mmr_pool
        self.max_k = max_k

    @classmethod
    def from_config(cls, config: StageConfig, export: ExportReader) -> RerankStage:
        s = config.serving
        return cls(
            process_catalog(config, export),
            export.version,
            diversity=s.diversity,
            max_per_category=s.max_per_category,
            temperature=s.temperature,
            mmr_pool=s.mmr_pool,
            max_k=s.max_k,
            new_item_slots=s.new_item_slots,
        )

    def rerank_row(
        self,
        snap: CatalogSnapshot,
        cand: np.ndarray,
        logits: np.ndarray,
        cats: np.ndarray,
        k: int,
        opts: RecommendOptions,
    ) -> tuple[list[int], list[float], bool]:
        """-> (item indices, probabilities, sampled?) for one request. Only items the snapshot holds as
        available qualify: the last check before the answer, whatever the earlier stages' snapshots said."""
        valid = np.flatnonzero(snap.servable(cand) & np.isfinite(logits))
        if len(valid) == 0 or k <= 0:
            return [], [], False
        diversity = self.diversity if opts.diversity is None else min(max(opts.diversity, 0.0), 1.0)
        cap = self.max_per_category if opts.max_per_category is None else max(opts.max_per_category, 0)
        temperature = self.temperature if opts.temperature is None else max(opts.temperature, 0.0)
        # Best first; ties broken by item index so the order never depends on retrieval order.
        ranked = valid[np.lexsort((cand[valid], -logits[valid]))]
        sampled = False
        if temperature > 0:
            rng = np.random.default_rng(opts.seed)
            gumbel = logits[ranked] / temperature + rng.gumbel(size=len(ranked))
            ranked = ranked[np.argsort(-gumbel, kind="stable")]
            sampled = True
        if diversity > 0:
            pool = ranked[: max(self.mmr_pool, 3 * k)]
            ranked = pool[mmr_order(logits[pool], snap.unit_of(cand[pool]), len(pool), diversity)]
        chosen = [int(p) for p in cap_per_category(list(ranked), cats, cap, k)]
        if self.new_item_slots > 0:
            # Candidates come in retrieval order (best first); the earlier stages only zero positions.
            retrieved = [int(p) for p in valid]
            chosen = promote_added(chosen, retrieved, cand > snap.n_export, self.new_item_slots, k)
        return [int(cand[p]) for p in chosen], [float(v) for v in sigmoid(logits[chosen])], sampled

    def run(self, batch: Mapping[str, np.ndarray]) -> Tensors:
        cands = np.asarray(batch[FILTERED_CANDIDATES.name], dtype=np.int64)
        logits = np.asarray(batch[RANK_SCORES.name], dtype=np.float32)
        cats = np.asarray(batch[ITEM_CATEGORY.name], dtype=np.int64)
        ks = np.clip(int_column(batch[K.name]), 0, self.max_k)
        flags = (
            np.asarray(batch[CONTEXT_FLAGS.name])
            | np.asarray(batch[FEATURE_FLAGS.name])
            | np.asarray(batch[BLOOM_FLAGS.name])
        ).astype(np.int32)
        snap = self.catalog.snapshot
        rows = []
        for row, opts in enumerate(options_column(batch[OPTIONS.name])):
            items, probs, sampled = self.rerank_row(snap, cands[row], logits[row], cats[row], int(ks[row]), opts)
            if sampled:
                flags[row, 0] |= FLAG_BITS[SAMPLED]
            rows.append((items, probs))
        width = max(1, max(len(items) for items, _ in rows))
        ids = np.full((len(rows), width), b"", dtype=object)
        scores = np.full((len(rows), width), np.nan, dtype=np.float32)
        for row, (items, probs) in enumerate(rows):
            ids[row, : len(items)] = [str(v).encode() for v in snap.item_ids_of(np.array(items, dtype=np.int64))]
            scores[row, : len(probs)] = probs
        version = np.full((len(rows), 1), self.version.encode(), dtype=object)
        return {ITEM_IDS.name: ids, ITEM_SCORES.name: scores, MODEL_VERSION.name: version, FLAGS.name: flags}
