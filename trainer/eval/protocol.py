"""Evaluation protocol: global temporal split, per-user ground truth, scorers and metrics.

Train on events before the 80th-percentile timestamp, validate up to the 90th, test after. A test user is
one with at least one positive test event and some history before the test period. Items the user
interacted with before the test period are excluded from the ranking (as the Bloom filter does online) and
from the ground truth. Requests are issued at the user's first test event (its device and hour), with
features from the events before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from streamrec.errors import DataError
from trainer.data.history import UserHistory
from trainer.data.loading import Dataset, Events
from trainer.eval.metrics import KS, auc, coverage, ranking_metrics, top_k
from trainer.models.inputs import RankerBatch, UserFeatures
from trainer.train.pipeline import TrainedModels
from trainer.train.tables import QueryFeatures, query_features_at

ScoreFn = Callable[[np.ndarray], np.ndarray]  # rows of the task -> Float[b, n_items + 1]


@dataclass
class TemporalSplit:
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    train_end_ms: int
    val_end_ms: int


def temporal_split(events: Events, train_q: float = 0.8, val_q: float = 0.9) -> TemporalSplit:
    if len(events) < 10:
        raise DataError(f"too few events ({len(events)}) for a temporal split")
    t_train = int(np.quantile(events.ts_ms, train_q))
    t_val = int(np.quantile(events.ts_ms, val_q))
    ts = events.ts_ms
    return TemporalSplit(
        train_rows=np.flatnonzero(ts < t_train),
        val_rows=np.flatnonzero((ts >= t_train) & (ts < t_val)),
        test_rows=np.flatnonzero(ts >= t_val),
        train_end_ms=t_train,
        val_end_ms=t_val,
    )


@dataclass
class EvalTask:
    """Test requests: one per user, with ground truth and the items to exclude."""

    users: np.ndarray  # int64 [B]
    request_ts: np.ndarray  # int64 [B]
    request_device: np.ndarray  # int64 [B]
    truth: list[np.ndarray]  # per user, relevant item indices
    seen_rows: np.ndarray  # int64 [S], task row of each excluded (row, item) pair
    seen_items: np.ndarray  # int64 [S]
    n_items: int
    history: UserHistory
    history_events: Events

    def __len__(self) -> int:
        return len(self.users)

    def features(self, rows: np.ndarray, with_counts: bool) -> QueryFeatures:
        return query_features_at(
            self.users[rows], self.request_ts[rows], self.request_device[rows], self.history, with_counts
        )

    def exclude(self, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Set seen items (and the padding item 0) to -inf.  scores Float[b, n_items + 1]"""
        scores = scores.copy()
        scores[:, 0] = -np.inf
        position = np.full(len(self.users), -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        mask = position[self.seen_rows] >= 0
        scores[position[self.seen_rows[mask]], self.seen_items[mask]] = -np.inf
        return scores


def build_task(
    dataset: Dataset, history_rows: np.ndarray, test_rows: np.ndarray, max_users: int = 0, seed: int = 0
) -> EvalTask:
    """Requests of the users with positives in ``test_rows`` and history in ``history_rows``."""
    events = dataset.events
    history_events = events.take(np.sort(history_rows))
    test = events.take(np.sort(test_rows))
    positive = test.of_types(dataset.positive_types) & (test.user > 0)
    known_users = np.unique(history_events.user[history_events.user > 0])
    candidates = np.unique(test.user[positive])
    users = candidates[np.isin(candidates, known_users)]
    if max_users and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    n_items = dataset.catalog.n_items
    seen_keys = np.unique(history_events.user.astype(np.int64) * (n_items + 1) + history_events.item)
    pos_keys = np.unique(test.user[positive].astype(np.int64) * (n_items + 1) + test.item[positive])
    pos_keys = pos_keys[~np.isin(pos_keys, seen_keys)]
    pos_users, pos_items = pos_keys // (n_items + 1), pos_keys % (n_items + 1)
    keep = np.isin(pos_users, users)
    pos_users, pos_items = pos_users[keep], pos_items[keep]
    users = np.unique(pos_users)
    if len(users) == 0:
        raise DataError("no test user has a new positive item after the history period")
    starts = np.searchsorted(pos_users, users)
    truth = np.split(pos_items, starts[1:])
    first = np.unique(test.user, return_index=True)
    first_row = first[1][np.searchsorted(first[0], users)]
    seen_users, seen_items = seen_keys // (n_items + 1), seen_keys % (n_items + 1)
    in_task = np.isin(seen_users, users)
    return EvalTask(
        users=users,
        request_ts=test.ts_ms[first_row],
        request_device=test.device[first_row],
        truth=list(truth),
        seen_rows=np.searchsorted(users, seen_users[in_task]),
        seen_items=seen_items[in_task],
        n_items=n_items,
        history=UserHistory.build(history_events, dataset.users.n_users),
        history_events=history_events,
    )


def model_retrieval_scores(models: TrainedModels, task: EvalTask, item_embeddings: np.ndarray | None = None) -> ScoreFn:
    """Query tower · item embeddings (default: the item tower's, ``TrainedModels.item_embeddings``)."""
    embeddings = torch.as_tensor(models.item_embeddings() if item_embeddings is None else item_embeddings)
    tower = models.two_tower.query_tower.cpu().eval()
    profiles = torch.as_tensor(models.profiles)

    def score(rows: np.ndarray) -> np.ndarray:
        feats = task.features(rows, with_counts=False)
        with torch.no_grad():
            q = tower(user_features(feats, profiles))
            return (q @ embeddings.T).numpy()

    return score


def ranker_scores(models: TrainedModels, task: EvalTask, rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """DLRM logits of candidates Long[b, N] for the task rows.  -> Float[b, N]"""
    ranker = models.ranker.cpu().eval()
    feats = task.features(rows, with_counts=True)
    items = models.items.to("cpu")  # zero-copy views of the numpy tables
    idx = torch.as_tensor(candidates)
    # An item without training events has an untrained id row: it is read as unknown (content only), as
    # serving reads an item added after training.
    learned = torch.as_tensor(models.items.popularity > 0)
    features = items.features(idx)._replace(item_idx=torch.where(learned[idx], idx, torch.zeros_like(idx)))
    batch = RankerBatch(
        user=user_features(feats, torch.as_tensor(models.profiles)),
        user_dense=torch.as_tensor(feats.counts),
        candidates=features,
    )
    with torch.no_grad():
        return ranker(batch).numpy()


def user_features(feats: QueryFeatures, profiles: torch.Tensor) -> UserFeatures:
    """Model inputs of evaluation requests; ``profiles`` Long[n_users + 1, P].  -> UserFeatures over b"""
    user = torch.as_tensor(feats.user)
    return UserFeatures(
        user_idx=user,
        profile_idx=profiles[user],
        recent_items=torch.as_tensor(feats.recent).long(),
        context_idx=torch.as_tensor(feats.context).long(),
    )


def evaluate_scorer(task: EvalTask, score: ScoreFn, batch: int = 1024, depth: int = max(KS)) -> np.ndarray:
    """Top-``depth`` items per task row after excluding seen items.  -> Long[B, depth]"""
    out = []
    for start in range(0, len(task), batch):
        rows = np.arange(start, min(start + batch, len(task)))
        out.append(top_k(task.exclude(rows, score(rows)), depth))
    return np.concatenate(out)


def metrics_of(task: EvalTask, recommended: np.ndarray) -> dict[str, float]:
    result = ranking_metrics(recommended, task.truth)
    result["coverage@10"] = coverage(recommended, task.n_items)
    return result


def end_to_end(models: TrainedModels, task: EvalTask, retrieved: np.ndarray, depth: int = max(KS)) -> np.ndarray:
    """Rerank the retrieval candidates (seen items already excluded) with the ranker.  -> Long[B, depth]"""
    out = []
    for start in range(0, len(task), 512):
        rows = np.arange(start, min(start + 512, len(task)))
        cand = retrieved[rows]
        logits = ranker_scores(models, task, rows, cand)
        order = np.argsort(-logits, axis=1, kind="stable")[:, :depth]
        out.append(np.take_along_axis(cand, order, axis=1))
    return np.concatenate(out)


def ranker_auc(models: TrainedModels, task: EvalTask, negatives_per_user: int = 20, seed: int = 0) -> float:
    """AUC of the ranker: each user's relevant test items against random unseen catalog items."""
    rng = np.random.default_rng(seed)
    labels, scores = [], []
    for start in range(0, len(task), 512):
        rows = np.arange(start, min(start + 512, len(task)))
        width = max(len(task.truth[r]) for r in rows) + negatives_per_user
        cand = rng.integers(1, task.n_items + 1, size=(len(rows), width))
        lab = np.zeros(cand.shape, dtype=bool)
        valid = np.ones(cand.shape, dtype=bool)
        for j, r in enumerate(rows):
            t = task.truth[r]
            cand[j, : len(t)] = t
            lab[j, : len(t)] = True
            valid[j, len(t) : width - negatives_per_user] = False  # padding slots
            valid[j, len(t) :] &= ~np.isin(cand[j, len(t) :], t)
        logits = ranker_scores(models, task, rows, cand)
        labels.append(lab[valid])
        scores.append(logits[valid])
    return auc(np.concatenate(labels), np.concatenate(scores))
