"""Metrics on hand-made cases, AUC against scikit-learn, BPR beats chance, temporal split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.data.loading import Dataset
from trainer.eval.baselines import BPRConfig, train_bpr
from trainer.eval.metrics import auc, coverage, ranking_metrics, top_k
from trainer.eval.protocol import build_task, temporal_split
from trainer.settings import TrainerSettings


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


def test_new_items_are_those_first_seen_in_the_test_period_and_tasks_keep_only_their_positives(
    tiny_dataset: Dataset,
) -> None:
    from trainer.data.loading import Events
    from trainer.eval.coldstart import new_item_mask, restrict_task

    events = Events(
        user=np.array([1, 1, 2, 2, 3]),
        item=np.array([1, 2, 2, 3, 3]),
        etype=np.zeros(5, np.int8),
        ts_ms=np.array([10, 20, 30, 40, 50]),
        device=np.zeros(5, np.int64),
    )
    # item 1 first at 10, item 2 at 20, item 3 at 40; item 4 never: only item 3 is new at cut-off 35
    assert new_item_mask(events, 4, 35).tolist() == [False, False, False, True, False]

    split = temporal_split(tiny_dataset.events)
    task = build_task(tiny_dataset, np.concatenate([split.train_rows, split.val_rows]), split.test_rows)
    allowed = np.zeros(task.n_items + 1, bool)
    allowed[1::2] = True  # odd items
    cold = restrict_task(task, allowed)
    assert cold is not None and 0 < len(cold) <= len(task)
    assert all(len(t) and (t % 2 == 1).all() for t in cold.truth)
    kept = {int(u): i for i, u in enumerate(task.users)}
    for row, user in enumerate(cold.users[:20]):  # the exclusions follow their user
        before = set(task.seen_items[task.seen_rows == kept[int(user)]])
        assert set(cold.seen_items[cold.seen_rows == row]) == before
    assert restrict_task(task, np.zeros(task.n_items + 1, bool)) is None


@pytest.mark.slow
def test_eval_scores_items_launched_in_the_test_period_by_content(tmp_path: Path, settings: TrainerSettings) -> None:
    from trainer.data import synthetic
    from trainer.eval.coldstart import CONTENT_NEIGHBOURS, CONTENT_RETRIEVAL, ORACLE, POPULARITY, RANDOM
    from trainer.eval.run import run_evaluation

    config = synthetic.SyntheticConfig.preset("tiny", seed=7).with_new_items(30)
    synthetic.prepare(tmp_path / "data", config)
    result = run_evaluation(tmp_path / "data", settings, tmp_path / "report")
    cold = result.cold_start
    assert {CONTENT_RETRIEVAL, CONTENT_NEIGHBOURS, POPULARITY, RANDOM, ORACLE} <= set(cold)
    assert 0 < result.context["new items (cold start)"] <= 30
    # The planted structure is visible through content alone: well above random and category popularity.
    for path in (CONTENT_RETRIEVAL, CONTENT_NEIGHBOURS):
        assert cold[path]["recall@10"] > max(cold[RANDOM]["recall@10"], cold[POPULARITY]["recall@10"]), path
    assert cold[ORACLE]["recall@10"] >= cold[RANDOM]["recall@10"]
    assert "New items (cold start" in (tmp_path / "report" / "report.md").read_text()
