"""``streamrec train finetune``: the daily job.

Starts from the production version (the one ``CURRENT`` names), trains the query tower and the ranker on
the newest day plus a replay sample of older days (item tower and the known items' embeddings fixed; items
added to the catalog since are embedded from their content alone and appended to the index), then compares
candidate and production on a held-out slice (the newest part of the day) and publishes the
candidate only if its end-to-end Recall@20 is not worse.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from streamrec import artifacts as art
from streamrec.archive import partition_dates
from streamrec.catalog.settings import CatalogSettings
from streamrec.errors import ArtifactError, DataError
from trainer.data.loading import Dataset, UserTable, load_dataset
from trainer.embeddings.content import ContentEmbeddings, encode_images, encode_texts
from trainer.eval.protocol import EvalTask, build_task
from trainer.eval.run import evaluate_models
from trainer.export.writer import load_trained
from trainer.settings import TrainerSettings
from trainer.train.full import RunSummary, day_of, publish_models, reload_triton
from trainer.train.pipeline import TrainedModels, train_models
from trainer.train.tables import ItemTables

PROMOTION_METRIC = "recall@20"


@dataclass
class FinetuneSplit:
    train_rows: np.ndarray  # newest day before the hold-out + replay sample
    history_rows: np.ndarray  # everything before the hold-out (point-in-time features look back at it)
    holdout_rows: np.ndarray  # newest part of the newest day
    new_day_rows: int
    replay_rows: int


def split_for_finetune(dataset: Dataset, day: date, settings: TrainerSettings) -> FinetuneSplit:
    ts = dataset.events.ts_ms
    day_start = int(np.datetime64(day.isoformat(), "ms").astype(np.int64))
    on_day = np.flatnonzero((ts >= day_start) & (ts < day_start + 86_400_000))
    if len(on_day) < 10:
        raise DataError(f"too few events on {day} to fine-tune ({len(on_day)})")
    n_hold = max(1, int(len(on_day) * settings.finetune_holdout_fraction))
    holdout = on_day[-n_hold:]
    new_day = on_day[:-n_hold]
    older = np.flatnonzero(ts < day_start)
    rng = np.random.default_rng(settings.seed)
    n_replay = min(len(older), int(len(new_day) * settings.finetune_replay_ratio))
    replay = np.sort(rng.choice(older, n_replay, replace=False)) if n_replay else older[:0]
    return FinetuneSplit(
        train_rows=np.sort(np.concatenate([replay, new_day])),
        history_rows=np.concatenate([older, new_day]),
        holdout_rows=holdout,
        new_day_rows=len(new_day),
        replay_rows=n_replay,
    )


def with_new_items(models: TrainedModels, dataset: Dataset, settings: TrainerSettings) -> tuple[TrainedModels, int]:
    """``models`` with item tables covering the catalog's items added after its export (their content only).

    New items (indices after the exported ones) get text/image features through the export's own PCA
    projections, ``log_popularity`` from the loaded window's events and their price; the item tower reads
    their out-of-range index as 0, so their embedding is the content-only path. -> (models, new item count)
    """
    n_known = len(models.items.category_idx) - 1
    n_new = dataset.catalog.n_items - n_known
    if n_new <= 0:
        return models, 0
    content = models.content
    if content.text_projection is None or content.image_projection is None:
        raise ArtifactError(
            f"{n_new} items are new since the production version, which was exported without its content "
            "projections; run 'streamrec train full' to include them"
        )
    texts = dataset.catalog.texts[n_known:]
    raw_text, text_model = encode_texts(texts, settings)
    if content.text_model and text_model != content.text_model:
        raise ArtifactError(f"text model {text_model!r} differs from the production version's {content.text_model!r}")
    text = content.text_projection.apply(raw_text)
    raw_image = np.zeros((n_new, content.image_projection.raw_dim), dtype=np.float32)
    if content.image_projection.raw_dim:
        found = encode_images(dataset.catalog.images[n_known:], settings)
        if found is not None:
            raw_image = found
    image = content.image_projection.apply(raw_image)
    popularity = np.bincount(dataset.events.item, minlength=dataset.catalog.n_items + 1)[n_known + 1 :]
    dense = np.stack(
        [np.log1p(popularity), np.log1p(np.maximum(dataset.catalog.price[n_known + 1 :], 0.0))], axis=1
    ).astype(np.float32)
    items = models.items
    extended = ItemTables(
        category_idx=dataset.catalog.category_idx,
        dense=np.concatenate([items.dense, dense]),
        text=np.concatenate([items.text, text]),
        image=np.concatenate([items.image, image]),
        popularity=np.concatenate([items.popularity, popularity.astype(np.float32)]),
    )
    extended_content = ContentEmbeddings(
        text=extended.text,
        image=extended.image,
        text_model=content.text_model,
        image_model=content.image_model,
        notes=[],
        text_projection=content.text_projection,
        image_projection=content.image_projection,
    )
    return replace(models, items=extended, content=extended_content), n_new


def check_compatible(dataset: Dataset, meta: art.ExportMetadata) -> None:
    spec = meta.feature_spec
    if list(dataset.users.profile_fields) != spec.profile_fields:
        raise ArtifactError(
            f"feature spec mismatch: the data's profile fields {dataset.users.profile_fields} differ from "
            f"{meta.version}'s {spec.profile_fields}"
        )


def compare(
    candidate: TrainedModels, production: TrainedModels, task: EvalTask, settings: TrainerSettings
) -> tuple[dict[str, float], bool, str]:
    cand = evaluate_models(candidate, task, settings.retrieval_candidates)["two-tower + DLRM (end to end)"]
    prod = evaluate_models(production, task, settings.retrieval_candidates)["two-tower + DLRM (end to end)"]
    metrics = {f"holdout_{k}": v for k, v in cand.items()}
    metrics.update({f"production_holdout_{k}": v for k, v in prod.items()})
    c, p = cand[PROMOTION_METRIC], prod[PROMOTION_METRIC]
    if c >= p * (1.0 - settings.promote_tolerance):
        return metrics, True, f"promoted: hold-out {PROMOTION_METRIC} {c:.4f} >= production's {p:.4f}"
    return metrics, False, f"kept production: hold-out {PROMOTION_METRIC} {c:.4f} < production's {p:.4f}"


def run_finetune(
    root: Path,
    export_root: Path,
    settings: TrainerSettings,
    day: date | None = None,
    triton_url: str | None = None,
    catalog: str | None = None,
) -> RunSummary:
    began = time.perf_counter()
    current = art.read_current(export_root)
    production, meta, state = load_trained(art.version_dir(export_root, current))
    days = partition_dates(Path(root))
    if not days:
        raise DataError(f"no archived interactions under {root}")
    day = day or days[-1]
    if day not in days:
        raise DataError(f"no archived interactions on {day} under {root}")
    maps = art.load_id_maps(art.version_dir(export_root, current), meta)
    users = UserTable(
        user_ids=maps.user_ids,
        profile_fields=list(state["profile_fields"]),
        profile_vocabs=[list(v) for v in state["profile_vocabs"]],
        profile_idx=production.profiles,
    )
    start = day - timedelta(days=settings.finetune_replay_days)
    dataset = load_dataset(
        root, start, day, item_ids=maps.item_ids, categories=maps.categories[1:], user_table=users, catalog=catalog
    )
    check_compatible(dataset, meta)
    known_embeddings = np.asarray(state["item_embeddings"], dtype=np.float32)
    production, n_new = with_new_items(production, dataset, settings)
    item_embeddings = known_embeddings
    if n_new:
        # Known items keep their exported vectors; the added ones are embedded as the catalog sync embeds them.
        item_embeddings = production.item_embeddings()
        item_embeddings[: len(known_embeddings)] = known_embeddings
        added = np.arange(len(item_embeddings)) >= len(known_embeddings)
        k = CatalogSettings.load().new_item_neighbours
        item_embeddings = production.borrowed_item_embeddings(added, k, embeddings=item_embeddings)
    split = split_for_finetune(dataset, day, settings)
    train_began = time.perf_counter()
    candidate = train_models(
        dataset,
        split.train_rows,
        production.content,
        settings.model_copy(update={"learning_rate": settings.finetune_learning_rate}),
        init=copy.deepcopy(production),
        retrieval_epochs=settings.finetune_epochs,
        ranker_epochs=settings.finetune_epochs,
        history_rows=split.history_rows,
    )
    train_seconds = time.perf_counter() - train_began
    task = build_task(dataset, split.history_rows, split.holdout_rows, max_users=5_000, seed=settings.seed)
    metrics, promote, reason = compare(candidate, production, task, settings)
    metrics["train_seconds"] = train_seconds
    window = (day_of(int(dataset.events.ts_ms[split.train_rows[0]])), day.isoformat())
    version = None
    reloaded: list[str] = []
    if promote:
        version = publish_models(
            export_root,
            candidate,
            dataset,
            settings,
            kind="finetune",
            window=window,
            metrics=metrics,
            parent=current,
            item_embeddings=item_embeddings,
        )
        reloaded = reload_triton(settings, triton_url)
    return RunSummary(
        kind="finetune",
        version=version,
        promoted=promote,
        reason=reason,
        dataset=dataset.name,
        window=window,
        events=len(split.train_rows),
        seconds=time.perf_counter() - began,
        stages=candidate.summary(),
        metrics=metrics,
        reloaded=reloaded,
        extras={"candidate": candidate, "production": production, "task": task, "dataset": dataset},
        notes=[
            f"parent {current}; {split.new_day_rows} events of {day} + {split.replay_rows} replayed; "
            f"hold-out {len(split.holdout_rows)} events, {len(task)} users",
            f"{n_new} items new since the parent, embedded from content (catalog {dataset.extra['catalog_root']})",
        ],
    )
