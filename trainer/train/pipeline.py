"""Build examples from a dataset and train both models: the part shared by full training, fine-tuning and eval."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.content_neighbours import ContentNeighbours
from streamrec.errors import DataError
from streamrec.features import EVENT_TYPES, USER_COUNT_FEATURES
from trainer.data.history import UserHistory
from trainer.data.loading import Dataset, Events
from trainer.embeddings.content import ContentEmbeddings, torch_device
from trainer.models.dlrm import DLRMConfig, DLRMRanker
from trainer.models.two_tower import TwoTower, TwoTowerConfig
from trainer.settings import TrainerSettings
from trainer.train.loops import Checkpointer, LoopStats, seed_everything, train_ranker, train_two_tower
from trainer.train.tables import ITEM_DENSE_FEATURES, ItemTables, query_features_for_events

#: Event types that are shown-but-not-wanted: the ranker's impressed negatives.
IMPRESSED_NEGATIVE_TYPES: tuple[str, ...] = ("view", "dislike")


@dataclass
class TrainedModels:
    two_tower: TwoTower
    ranker: DLRMRanker
    items: ItemTables
    content: ContentEmbeddings
    profiles: np.ndarray  # int64 [n_users + 1, P]
    stats: list[LoopStats] = field(default_factory=list)
    device: str = "cpu"

    def item_embeddings(self, batch: int = 8192) -> np.ndarray:
        """Item-tower output for every item.  -> float32 [n_items + 1, D] (row 0: the unknown item)

        An item without interactions in the training window has an untrained id embedding: it is embedded
        from its content alone (index 0), as an item added after training is.
        """
        tower = self.two_tower.item_tower
        device = str(next(tower.parameters()).device)
        tables = self.items.to(device)
        n = len(self.items.category_idx)
        learned = torch.as_tensor(self.items.popularity > 0, device=device)
        out = []
        with torch.no_grad():
            for start in range(0, n, batch):
                idx = torch.arange(start, min(start + batch, n), device=device)
                features = tables.features(idx)
                features = features._replace(item_idx=torch.where(learned[idx], idx, torch.zeros_like(idx)))
                out.append(tower(features).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def borrowed_item_embeddings(
        self, borrowers: np.ndarray, k: int, embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """``embeddings`` (default: ``item_embeddings``) with the rows of ``borrowers`` (bool [n_items + 1])
        borrowed from their ``k`` content neighbours among the other items trained with events, as the catalog
        sync embeds an item added after training (``streamrec.content_neighbours``); k = 0, or no trained item
        with content: unchanged."""
        embeddings = self.item_embeddings() if embeddings is None else np.array(embeddings, np.float32)
        items = self.items
        learned = (items.popularity > 0) & ~borrowers
        neighbours = ContentNeighbours.of_learned(items.text, items.image, embeddings, learned, k=k) if k > 0 else None
        if neighbours is not None and borrowers.any():
            embeddings[borrowers] = neighbours.embed(
                items.text[borrowers], items.image[borrowers], fallback=embeddings[borrowers]
            )
        return embeddings

    def summary(self) -> dict[str, Any]:
        return {s.stage: s.summary() for s in self.stats}


def training_device(settings: TrainerSettings) -> str:
    return torch_device(settings.device)


def impressed_negative_rows(events: Events, positive_types: tuple[str, ...]) -> np.ndarray:
    """Events of a negative type whose (user, item) pair has no positive in the window."""
    negatives = np.flatnonzero(events.of_types(IMPRESSED_NEGATIVE_TYPES))
    positives = events.of_types(positive_types)
    n_items = int(events.item.max()) + 1
    pos_keys = np.unique(events.user[positives] * n_items + events.item[positives])
    neg_keys = events.user[negatives] * n_items + events.item[negatives]
    return negatives[~np.isin(neg_keys, pos_keys)]


def build_two_tower(dataset: Dataset, content: ContentEmbeddings, settings: TrainerSettings) -> TwoTower:
    config = TwoTowerConfig(
        n_users=dataset.users.n_users,
        n_items=dataset.catalog.n_items,
        n_categories=len(dataset.catalog.categories),
        profile_vocab_sizes=dataset.users.profile_vocab_sizes,
        text_dim=content.text.shape[1],
        image_dim=content.image.shape[1],
        embedding_dim=settings.embedding_dim,
        id_dim=settings.id_dim,
    )
    return TwoTower(config)


def build_ranker(dataset: Dataset, content: ContentEmbeddings) -> DLRMRanker:
    config = DLRMConfig(
        n_users=dataset.users.n_users,
        n_items=dataset.catalog.n_items,
        n_categories=len(dataset.catalog.categories),
        profile_vocab_sizes=dataset.users.profile_vocab_sizes,
        n_user_dense=len(USER_COUNT_FEATURES),
        n_item_dense=len(ITEM_DENSE_FEATURES),
        text_dim=content.text.shape[1],
        image_dim=content.image.shape[1],
    )
    return DLRMRanker(config)


def train_models(
    dataset: Dataset,
    train_rows: np.ndarray,
    content: ContentEmbeddings,
    settings: TrainerSettings,
    *,
    checkpoint_dir: Path | None = None,
    init: TrainedModels | None = None,
    retrieval_epochs: int | None = None,
    ranker_epochs: int | None = None,
    history_rows: np.ndarray | None = None,
) -> TrainedModels:
    """Train (or, with ``init``, fine-tune with a frozen item tower) on ``dataset.events[train_rows]``.

    ``history_rows`` (default: ``train_rows``) are the events the point-in-time features may look back at,
    e.g. older days that are not trained on again.
    """
    seed_everything(settings.seed)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = training_device(settings)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    events = dataset.events
    train_rows = np.sort(train_rows)
    history_rows = train_rows if history_rows is None else np.sort(np.union1d(history_rows, train_rows))
    if len(train_rows) == 0:
        raise DataError("the training window holds no events")
    history_events = events.take(history_rows)
    history = UserHistory.build(history_events, dataset.users.n_users)
    # Positions of the training events inside history_events.
    local = np.searchsorted(history_rows, train_rows)
    train_events = history_events.take(local)
    items = ItemTables.build(dataset, content, train_events if init is None else history_events)
    if init is not None:
        items = ItemTables(
            category_idx=items.category_idx,
            dense=init.items.dense,
            text=init.items.text,
            image=init.items.image,
            popularity=init.items.popularity,
        )
    device_items = items.to(device)
    profiles = torch.as_tensor(dataset.users.profile_idx, device=device)
    checkpoint = Checkpointer(checkpoint_dir)

    retrieval_mask = train_events.of_types(dataset.retrieval_types) & (train_events.user >= 0)
    retrieval_local = local[retrieval_mask]
    two_tower = init.two_tower if init is not None else build_two_tower(dataset, content, settings)
    frozen = None
    if init is not None:
        frozen = torch.as_tensor(init.item_embeddings(), device=device)
    validation = None
    n_val = int(len(retrieval_local) * settings.validation_fraction)
    if n_val >= 2 * settings.batch_size // 8:
        val_local = retrieval_local[-n_val:]  # the newest examples: early stopping watches them
        retrieval_local = retrieval_local[:-n_val]
        validation = (
            query_features_for_events(history_events, val_local, history, with_counts=False),
            history_events.item[val_local],
        )
    features = query_features_for_events(history_events, retrieval_local, history, with_counts=False)
    item_counts = np.bincount(history_events.item[retrieval_local], minlength=dataset.catalog.n_items + 1)
    two_tower.to(device)
    tt_stats = train_two_tower(
        two_tower,
        features,
        history_events.item[retrieval_local],
        device_items,
        profiles,
        item_counts,
        settings,
        device,
        retrieval_epochs or settings.retrieval_epochs,
        checkpoint,
        frozen_item_embeddings=frozen,
        validation=validation,
    )
    del features

    pos_mask = train_events.of_types(dataset.positive_types)
    neg_local = local[impressed_negative_rows(train_events, dataset.positive_types)]
    ranker_local = np.sort(np.concatenate([local[pos_mask], neg_local]))
    labels = np.isin(history_events.etype[ranker_local], [EVENT_TYPES.index(t) for t in dataset.positive_types])
    ranker = init.ranker if init is not None else build_ranker(dataset, content)
    ranker_validation = None
    n_val = int(len(ranker_local) * settings.validation_fraction)
    if n_val >= 2 * settings.batch_size // 8:
        val_local, val_labels = ranker_local[-n_val:], labels[-n_val:]
        ranker_local, labels = ranker_local[:-n_val], labels[:-n_val]
        ranker_validation = (
            query_features_for_events(history_events, val_local, history, with_counts=True),
            history_events.item[val_local],
            val_labels.astype(np.float32),
        )
    ranker_features = query_features_for_events(history_events, ranker_local, history, with_counts=True)
    ranker.to(device)
    rk_stats = train_ranker(
        ranker,
        ranker_features,
        history_events.item[ranker_local],
        labels.astype(np.float32),
        device_items,
        profiles,
        np.power(items.popularity + 1.0, settings.ranker_negative_power) * (np.arange(len(items.popularity)) > 0),
        settings,
        device,
        ranker_epochs or settings.ranker_epochs,
        checkpoint,
        validation=ranker_validation,
    )
    return TrainedModels(
        two_tower=two_tower,
        ranker=ranker,
        items=items,
        content=content,
        profiles=dataset.users.profile_idx,
        stats=[tt_stats, rk_stats],
        device=device,
    )
