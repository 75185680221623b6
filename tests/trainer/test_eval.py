"""Metrics on hand-made cases, AUC against scikit-learn, BPR beats chance, temporal split."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.loading import Dataset
from trainer.eval.baselines import BPRConfig, train_bpr
from trainer.eval.metrics import auc, coverage, ranking_metrics, top_k
from trainer.eval.protocol import build_task, temporal_split


def test_ranking_metrics_by_hand() -> None:
    recommended = np.array([[5, 1, 7] + list(range(100, 147)), [9, 8, 6] + list(range(200, 247))])
    truth = [np.array([1, 3]), np.array([42])]
    m = ranking_metrics(recommended, truth, ks=(10,))
    assert m["recall@10"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["hr@10"] == pytest.approx(0.5)
    ideal = 1 + 1 / np.log2(3)
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(3)) / ideal / 2)


def test_top_k_and_coverage() -> None:
    scores = np.array([[0.1, 0.9, 0.5, -np.inf], [3.0, 1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(top_k(scores, 2), [[1, 2], [0, 2]])
    assert coverage(np.array([[1, 2], [1, 3]]), n_items=10, k=2) == pytest.approx(0.3)


def test_auc_matches_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.random(500) > 0.7
    scores = np.round(rng.standard_normal(500) + labels, 1)  # ties included
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_temporal_split_and_task(tiny_dataset: Dataset) -> None:
    split = temporal_split(tiny_dataset.events)
    ts = tiny_dataset.events.ts_ms
    assert ts[split.train_rows].max() < ts[split.val_rows].min() <= ts[split.val_rows].max() < ts[split.test_rows].min()
    assert len(split.train_rows) == pytest.approx(0.8 * len(ts), rel=0.02)
    history = np.concatenate([split.train_rows, split.val_rows])
    task = build_task(tiny_dataset, history, split.test_rows)
    assert len(task) > 0
    seen = set(zip(tiny_dataset.events.user[history], tiny_dataset.events.item[history], strict=True))
    for user, items in zip(task.users, task.truth, strict=True):
        assert all((user, item) not in seen for item in items)  # ground truth excludes seen items
    scores = task.exclude(np.arange(len(task)), np.zeros((len(task), tiny_dataset.catalog.n_items + 1)))
    assert np.isneginf(scores[task.seen_rows, task.seen_items]).all()


def test_bpr_learns_planted_structure(tiny_dataset: Dataset) -> None:
    events = tiny_dataset.events
    pos = events.of_types(("click", "add_to_cart", "purchase"))
    users, items = events.user[pos], events.item[pos]
    n_items = tiny_dataset.catalog.n_items
    model = train_bpr(users, items, tiny_dataset.users.n_users, n_items, BPRConfig(dim=16, epochs=15, seed=0))
    rng = np.random.default_rng(0)
    rows = rng.choice(len(users), 500, replace=False)
    scores = model.scores(users[rows])
    positive = scores[np.arange(len(rows)), items[rows]]
    random_items = rng.integers(1, n_items + 1, len(rows))
    negative = scores[np.arange(len(rows)), random_items]
    assert float(np.mean(positive > negative)) > 0.7
