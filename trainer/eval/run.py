"""``streamrec eval``: train on the temporal split, score the pipeline and the baselines, write the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.catalog.settings import CatalogSettings
from streamrec.features import EVENT_TYPES
from trainer.data.common import ORACLE_FILE
from trainer.data.loading import Dataset, load_dataset
from trainer.embeddings.content import build_content_embeddings
from trainer.eval.baselines import BPRConfig, popularity_scores, train_bpr
from trainer.eval.coldstart import (
    CONTENT_END_TO_END,
    CONTENT_NEIGHBOURS,
    CONTENT_RETRIEVAL,
    POPULARITY,
    cold_start_results,
    new_item_mask,
)
from trainer.eval.protocol import (
    EvalTask,
    ScoreFn,
    build_task,
    end_to_end,
    evaluate_scorer,
    metrics_of,
    model_retrieval_scores,
    ranker_auc,
    temporal_split,
)
from trainer.eval.report import write_report
from trainer.settings import TrainerSettings
from trainer.train.pipeline import TrainedModels, train_models


@dataclass
class EvalResult:
    results: dict[str, dict[str, float]]
    context: dict[str, Any]
    report: Path | None
    models: TrainedModels
    #: metrics over the items first seen in the test period (empty when there are none)
    cold_start: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate_models(models: TrainedModels, task: EvalTask, candidates: int) -> dict[str, dict[str, float]]:
    """Retrieval-only and end-to-end (retrieval top-``candidates`` -> ranker) metrics."""
    models.two_tower.cpu()
    models.ranker.cpu()
    retrieved = evaluate_scorer(task, model_retrieval_scores(models, task), depth=candidates)
    retrieval = metrics_of(task, retrieved)
    e2e = metrics_of(task, end_to_end(models, task, retrieved))
    e2e["auc"] = ranker_auc(models, task)
    return {"two-tower retrieval": retrieval, "two-tower + DLRM (end to end)": e2e}


def oracle_scorer(dataset: Dataset, task: EvalTask) -> ScoreFn | None:
    """The planted generator's own scores for the task's users (synthetic datasets only)."""
    path = dataset.root / ORACLE_FILE
    if not path.is_file():
        return None
    from trainer.data.synthetic import Oracle

    oracle = Oracle.load(path, dataset.users.user_ids, dataset.catalog.item_ids)
    return lambda rows: oracle.scores(task.users[rows])


def oracle_metrics(dataset: Dataset, task: EvalTask) -> dict[str, float] | None:
    """Metrics of the planted generator's own scores (synthetic datasets only)."""
    scorer = oracle_scorer(dataset, task)
    return None if scorer is None else metrics_of(task, evaluate_scorer(task, scorer))


def run_evaluation(
    root: Path,
    settings: TrainerSettings,
    out_dir: Path | None,
    start: date | None = None,
    end: date | None = None,
    max_users: int = 0,
    bpr: BPRConfig | None = None,
) -> EvalResult:
    began = time.perf_counter()
    dataset = load_dataset(root, start, end)
    split = temporal_split(dataset.events)
    content = build_content_embeddings(dataset.catalog.texts, dataset.catalog.images, settings)
    models = train_models(dataset, split.train_rows, content, settings)
    history_rows = np.concatenate([split.train_rows, split.val_rows])
    task = build_task(dataset, history_rows, split.test_rows, max_users=max_users, seed=settings.seed)
    results = evaluate_models(models, task, settings.retrieval_candidates)

    events = dataset.events
    train = events.take(split.train_rows)
    train_mask = train.of_types(dataset.retrieval_types)
    n_items = dataset.catalog.n_items
    pop = popularity_scores(train.item[train_mask], n_items)
    results["popularity"] = metrics_of(task, evaluate_scorer(task, lambda rows: np.tile(pop, (len(rows), 1))))
    bpr_model = train_bpr(
        train.user[train_mask],
        train.item[train_mask],
        dataset.users.n_users,
        n_items,
        bpr or BPRConfig(seed=settings.seed),
    )
    results["BPR-MF"] = metrics_of(task, evaluate_scorer(task, lambda rows: bpr_model.scores(task.users[rows])))
    oracle = oracle_metrics(dataset, task)
    notes = list(content.notes)
    if oracle is not None:
        results["planted oracle"] = oracle
        ratio = results["two-tower + DLRM (end to end)"]["recall@10"] / max(oracle["recall@10"], 1e-12)
        notes.append(f"end-to-end Recall@10 / oracle Recall@10 = {ratio:.3f} (target >= 0.9)")
    pipeline = results["two-tower + DLRM (end to end)"]
    for base in ("popularity", "BPR-MF"):
        for metric in ("recall@10", "ndcg@10"):
            lift = pipeline[metric] / max(results[base][metric], 1e-12) - 1.0
            notes.append(f"end to end vs {base}: {metric} {lift:+.1%}")
    context: dict[str, Any] = {
        "dataset": dataset.name,
        "events": len(events),
        "train / val / test events": f"{len(split.train_rows)} / {len(split.val_rows)} / {len(split.test_rows)}",
        "test users": len(task),
        "positives": ", ".join(dataset.positive_types),
        "retrieval depth before ranking": settings.retrieval_candidates,
        "text model": content.text_model,
        "image model": content.image_model or "none (image embeddings skipped)",
        "training": models.summary(),
        "wall seconds": round(time.perf_counter() - began, 1),
    }
    cold_results: dict[str, dict[str, float]] = {}
    sections = []
    new_items = new_item_mask(events, n_items, split.val_end_ms)
    if new_items.any():
        test_events = events.take(split.test_rows)
        codes = [EVENT_TYPES.index(t) for t in dataset.positive_types]
        cold = cold_start_results(
            models,
            task,
            new_items,
            test_events,
            codes,
            train,
            dataset.catalog.category_idx,
            settings.retrieval_candidates,
            oracle_for=lambda cold_task: oracle_scorer(dataset, cold_task),
            seed=settings.seed,
            neighbours=CatalogSettings.load().new_item_neighbours,
        )
        if cold is not None:
            cold_results, cold_context = cold
            pop_recall = max(cold_results[POPULARITY]["recall@10"], 1e-12)
            cold_notes = []
            for name in (CONTENT_RETRIEVAL, CONTENT_END_TO_END, CONTENT_NEIGHBOURS):
                if name not in cold_results:
                    continue
                lift = cold_results[name]["recall@10"] / pop_recall
                cold_notes.append(f"new items: {name} Recall@10 / popularity Recall@10 = {lift:.2f} (target >= 2)")
            sections.append(("New items (cold start, content only)", cold_context, cold_results, cold_notes))
            context["new items (cold start)"] = cold_context["new items (first event in the test period)"]
    losses = {s.stage: s.epoch_losses for s in models.stats}
    report = None
    if out_dir is not None:
        report = write_report(
            out_dir, f"Offline evaluation: {dataset.name}", context, results, losses, notes, sections=sections
        )
    return EvalResult(results=results, context=context, report=report, models=models, cold_start=cold_results)
