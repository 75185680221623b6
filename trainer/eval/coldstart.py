"""Cold-start evaluation: items whose first event falls in the test period, scored by the content-only path.

Such items have no training event, so the item tower embeds them from category, text, image and price alone
(``TrainedModels.item_embeddings``), and the ranker reads their id as unknown, which is how serving sees an
item added after training. The content-neighbour embedding (``streamrec.content_neighbours``: the learned
embeddings of the trained items nearest in content, what the catalog sync gives a new item by default) is
scored beside it. Each test user with a new positive on one of them is asked once (as in the main
protocol) to rank **the new items only** (a "new arrivals" list); the ground truth is their new positives
among them. Popularity knows nothing of an item without events but its category, so the popularity baseline
ranks new items by their category's share of the training events; the new items' own test-period popularity
is reported beside it as a reference that sees the future.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from trainer.data.loading import Events
from trainer.eval.metrics import KS
from trainer.eval.protocol import (
    EvalTask,
    ScoreFn,
    end_to_end,
    evaluate_scorer,
    metrics_of,
    model_retrieval_scores,
)
from trainer.train.pipeline import TrainedModels

CONTENT_RETRIEVAL = "two-tower retrieval (content only)"
CONTENT_END_TO_END = "two-tower + DLRM (content only)"
CONTENT_NEIGHBOURS = "two-tower retrieval (content neighbours)"
#: What popularity can know of an item without events: its category's share of the training events.
POPULARITY = "popularity (category's training share)"
#: A reference that cheats: the new items' own positives in the test period (what popularity would reach
#: if it saw the future). Not a baseline a deployed system has.
FUTURE_POPULARITY = "popularity of the test period (uses the future)"
RANDOM = "random"
ORACLE = "planted oracle"


def new_item_mask(events: Events, n_items: int, test_start_ms: int) -> np.ndarray:
    """Items whose first event (any type) is at or after ``test_start_ms``.  -> bool [n_items + 1]"""
    never = np.iinfo(np.int64).max
    first = np.full(n_items + 1, never, dtype=np.int64)
    np.minimum.at(first, events.item, events.ts_ms)
    mask = (first >= test_start_ms) & (first != never)
    mask[0] = False
    return mask


def restrict_task(task: EvalTask, allowed: np.ndarray) -> EvalTask | None:
    """The task's users with a relevant item in ``allowed`` (bool [n_items + 1]), truth cut to those items."""
    truth = [t[allowed[t]] for t in task.truth]
    rows = np.flatnonzero([len(t) > 0 for t in truth])
    if len(rows) == 0:
        return None
    position = np.full(len(task), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    keep = position[task.seen_rows] >= 0
    return replace(
        task,
        users=task.users[rows],
        request_ts=task.request_ts[rows],
        request_device=task.request_device[rows],
        truth=[truth[r] for r in rows],
        seen_rows=position[task.seen_rows[keep]],
        seen_items=task.seen_items[keep],
    )


def only(score: ScoreFn, allowed: np.ndarray) -> ScoreFn:
    """``score`` with every item outside ``allowed`` at -inf."""

    def restricted(rows: np.ndarray) -> np.ndarray:
        out = np.array(score(rows), dtype=np.float64, copy=True)
        out[:, ~allowed] = -np.inf
        return out

    return restricted


def cold_start_results(
    models: TrainedModels,
    task: EvalTask,
    new_items: np.ndarray,
    test_events: Events,
    positive_codes: list[int],
    train_events: Events,
    category_idx: np.ndarray,
    candidates: int,
    oracle_for: Callable[[EvalTask], ScoreFn | None] | None = None,
    seed: int = 0,
    neighbours: int = 0,
) -> tuple[dict[str, dict[str, float]], dict[str, object]] | None:
    """Metrics over the new items (``new_items`` bool [n_items + 1]); None when no test user has one.
    ``neighbours`` > 0 adds the content-neighbour embedding with that many neighbours."""
    cold = restrict_task(task, new_items)
    if cold is None:
        return None
    n_new = int(new_items.sum())
    results: dict[str, dict[str, float]] = {}
    retrieval = only(model_retrieval_scores(models, cold), new_items)
    results[CONTENT_RETRIEVAL] = metrics_of(cold, evaluate_scorer(cold, retrieval))
    retrieved = evaluate_scorer(cold, retrieval, depth=min(candidates, n_new))
    reranked = end_to_end(models, cold, retrieved)
    if reranked.shape[1] < max(KS):  # fewer new items than the deepest cut-off: pad with 0 (never relevant)
        reranked = np.pad(reranked, ((0, 0), (0, max(KS) - reranked.shape[1])))
    results[CONTENT_END_TO_END] = metrics_of(cold, reranked)
    if neighbours > 0:
        borrowed = models.borrowed_item_embeddings(new_items, neighbours)
        scores = only(model_retrieval_scores(models, cold, borrowed), new_items)
        results[CONTENT_NEIGHBOURS] = metrics_of(cold, evaluate_scorer(cold, scores))

    n = len(new_items)
    positive = np.isin(test_events.etype, positive_codes)
    popularity = np.bincount(test_events.item[positive], minlength=n).astype(np.float64)
    tie = np.random.default_rng(seed).random(n) * 1e-6  # ties broken at random, not by index
    share = np.bincount(category_idx[train_events.item], minlength=int(category_idx.max()) + 1)
    results[POPULARITY] = metrics_of(
        cold, evaluate_scorer(cold, _constant(share[category_idx].astype(np.float64) + tie, new_items))
    )
    results[FUTURE_POPULARITY] = metrics_of(cold, evaluate_scorer(cold, _constant(popularity + tie, new_items)))
    rng = np.random.default_rng(seed + 1)
    results[RANDOM] = metrics_of(cold, evaluate_scorer(cold, only(lambda rows: rng.random((len(rows), n)), new_items)))
    oracle = oracle_for(cold) if oracle_for is not None else None
    if oracle is not None:
        results[ORACLE] = metrics_of(cold, evaluate_scorer(cold, only(oracle, new_items)))
    context: dict[str, object] = {
        "new items (first event in the test period)": n_new,
        "test users with a new positive on one": len(cold),
        "ranked": "the new items only",
    }
    return results, context


def _constant(scores: np.ndarray, allowed: np.ndarray) -> ScoreFn:
    return only(lambda rows: np.tile(scores, (len(rows), 1)), allowed)
