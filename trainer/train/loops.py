"""Training loops of the two models, with seeded shuffling, tqdm progress and per-epoch checkpoints."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from streamrec.errors import DataError
from trainer.models.arches import UserArch
from trainer.models.dlrm import DLRMRanker
from trainer.models.inputs import RankerBatch, UserFeatures
from trainer.models.layers import check_index_ranges
from trainer.models.two_tower import TwoTower, in_batch_softmax_loss, mask_user_features
from trainer.settings import TrainerSettings
from trainer.train.tables import DeviceItemTables, QueryFeatures


@dataclass
class LoopStats:
    stage: str
    epochs: int = 0
    examples_seen: int = 0
    seconds: float = 0.0
    epoch_losses: list[float] = field(default_factory=list)
    resumed_from_epoch: int = 0
    validation_losses: list[float] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def samples_per_s(self) -> float:
        return self.examples_seen / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "examples_seen": self.examples_seen,
            "seconds": round(self.seconds, 2),
            "samples_per_s": round(self.samples_per_s, 1),
            "final_loss": round(self.epoch_losses[-1], 5) if self.epoch_losses else None,
            "resumed_from_epoch": self.resumed_from_epoch,
            "best_epoch": self.best_epoch or self.epochs,
        }


#: A ranker training task: candidates Long[b, N] (the event's item first) and their labels Float[b, N].
RankerTargets = tuple[torch.Tensor, torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Checkpointer:
    """One file per stage holding the model, optimizer and finished epoch; written atomically."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def path(self, stage: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{stage}.pt"

    def save(self, stage: str, epoch: int, model: nn.Module, optimizer: SplitOptimizer) -> None:
        path = self.path(stage)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
        torch.save(state, tmp)
        os.replace(tmp, path)

    def restore(self, stage: str, model: nn.Module, optimizer: SplitOptimizer) -> int:
        """Load the stage's last finished epoch into model and optimizer; returns that epoch count (0: none)."""
        path = self.path(stage)
        if path is None or not path.is_file():
            return 0
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, OSError, ValueError):
            return 0  # incompatible or torn checkpoint: start the stage over
        return int(state["epoch"])


class SplitOptimizer:
    """SparseAdam for embedding tables with sparse gradients, Adam for everything else.

    The user table (n_users x dim) dominates the parameters at scale; a dense Adam step would read and write
    all of it on every batch, which on CPU costs more than the forward and backward passes together.
    """

    def __init__(self, params: list[nn.Parameter], sparse: list[torch.Tensor], settings: TrainerSettings) -> None:
        sparse_ids = {id(p) for p in sparse}
        dense = [p for p in params if id(p) not in sparse_ids]
        self.dense = torch.optim.Adam(dense, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        self.sparse = torch.optim.SparseAdam(sparse, lr=settings.learning_rate) if sparse else None

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.dense.zero_grad(set_to_none=set_to_none)
        if self.sparse:
            self.sparse.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.dense.step()
        if self.sparse:
            self.sparse.step()

    def state_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict() if self.sparse else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.dense.load_state_dict(state_dict["dense"])
        if self.sparse and state_dict.get("sparse"):
            self.sparse.load_state_dict(state_dict["sparse"])


def make_optimizer(model: nn.Module, settings: TrainerSettings) -> SplitOptimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    sparse = [m.weight for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse and m.weight.requires_grad]
    return SplitOptimizer(params, sparse, settings)


class EarlyStopping:
    """Keeps the weights of the best validation loss; ``stop`` once ``patience`` epochs in a row were worse."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.worse = 0

    @property
    def stop(self) -> bool:
        return self.worse >= self.patience

    def observe(self, val_loss: float, model: nn.Module, stats: LoopStats) -> None:
        stats.validation_losses.append(val_loss)
        if val_loss < self.best_loss:
            self.best_loss, self.worse = val_loss, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.worse += 1

    def restore_best(self, model: nn.Module, stats: LoopStats) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
            stats.best_epoch = int(np.argmin(stats.validation_losses)) + 1


def _batches(n: int, batch_size: int, generator: torch.Generator, cap: int, device: str) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    if 0 < cap < n:
        order = order[:cap]
    return [chunk.to(device) for chunk in torch.split(order, batch_size)]


#: One training step: the example rows of a batch (Long[b], on the device) -> the loss to minimise (a scalar
#: with gradients), or None to skip the batch.
StepFn = Callable[[torch.Tensor], torch.Tensor | None]


def run_epochs(
    stage: str,
    model: nn.Module,
    optimizer: SplitOptimizer,
    n_examples: int,
    step: StepFn,
    *,
    settings: TrainerSettings,
    device: str,
    epochs: int,
    checkpoint: Checkpointer,
    generator: torch.Generator,
    validation_loss: Callable[[], float] | None = None,
) -> LoopStats:
    """The epoch loop both models train with: seeded batch order, per-epoch checkpoint, early stopping.

    Resumes after the stage's last checkpointed epoch (``generator`` still draws the skipped epochs' orders,
    so a resumed run sees the same batches). With ``validation_loss`` (run in eval mode without gradients
    after each epoch) training stops once it stopped improving for ``settings.patience`` epochs and the best
    epoch's weights are kept. Leaves ``model`` in eval mode.
    """
    stats = LoopStats(stage)
    start_epoch = checkpoint.restore(stage, model, optimizer)
    stats.resumed_from_epoch = start_epoch
    early = EarlyStopping(settings.patience)
    model.train()
    for epoch in range(epochs):
        batches = _batches(n_examples, settings.batch_size, generator, settings.max_examples_per_epoch, device)
        if epoch < start_epoch:
            continue
        if early.stop:
            break
        began, steps = time.perf_counter(), 0
        running = torch.zeros((), device=device)
        bar = tqdm(batches, desc=f"{stage} epoch {epoch + 1}/{epochs}", disable=not settings.progress, leave=False)
        for rows in bar:
            loss = step(rows)
            if loss is None:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running = running + loss.detach()  # no host sync per step: read back every 50 steps
            steps += 1
            stats.examples_seen += len(rows)
            if steps % 50 == 0 and settings.progress:
                bar.set_postfix(loss=f"{float(running) / steps:.4f}")
        if device == "cuda":
            torch.cuda.synchronize()
        stats.seconds += time.perf_counter() - began
        stats.epoch_losses.append(float(running) / max(steps, 1))
        stats.epochs += 1
        checkpoint.save(stage, epoch + 1, model, optimizer)
        if validation_loss is not None:
            model.eval()
            with torch.no_grad():
                val_loss = validation_loss()
            model.train()
            early.observe(val_loss, model, stats)
    early.restore_best(model, stats)
    model.eval()
    return stats


@dataclass
class DeviceQuery:
    """The user side of QueryFeatures, moved to the training device once; ``take`` gathers a batch's
    UserFeatures (the ranker moves the counts itself)."""

    user: torch.Tensor
    recent: torch.Tensor
    context: torch.Tensor
    profiles: torch.Tensor  # Long[n_users + 1, P]

    @classmethod
    def of(cls, features: QueryFeatures, profiles: torch.Tensor, device: str) -> DeviceQuery:
        return cls(
            user=torch.as_tensor(features.user, device=device),
            recent=torch.as_tensor(features.recent, device=device),
            context=torch.as_tensor(features.context, device=device),
            profiles=profiles,
        )

    def take(self, rows: torch.Tensor) -> UserFeatures:
        user = self.user[rows]
        return UserFeatures(
            user_idx=user,
            profile_idx=self.profiles[user],
            recent_items=self.recent[rows].long(),
            context_idx=self.context[rows].long(),
        )

    def check_ranges(self, user_arch: UserArch, n_items: int) -> None:
        """One readable error if any example holds an index outside the model's tables (the models would
        read it as "unknown"); one host read-back for all columns, before the loop."""
        columns = [("user_idx", self.user, user_arch.n_users), ("recent_items", self.recent, n_items)]
        columns += [
            (f"profile_idx[:, {j}]", self.profiles[:, j], size) for j, size in enumerate(user_arch.profile_sizes)
        ]
        columns += [
            (f"context_idx[:, {j}]", self.context[:, j], size) for j, size in enumerate(user_arch.context_sizes)
        ]
        check_index_ranges(columns)


def train_two_tower(
    model: TwoTower,
    features: QueryFeatures,
    positives: np.ndarray,
    items: DeviceItemTables,
    profiles: torch.Tensor,
    item_counts: np.ndarray,
    settings: TrainerSettings,
    device: str,
    epochs: int,
    checkpoint: Checkpointer,
    frozen_item_embeddings: torch.Tensor | None = None,
    stage: str = "retrieval",
    validation: tuple[QueryFeatures, np.ndarray] | None = None,
) -> LoopStats:
    """In-batch softmax over (query, positive item) pairs.

    With ``frozen_item_embeddings`` (Float[n_items + 1, D], fine-tuning) only the query tower learns. With
    ``validation`` (the newest examples, not trained on), training stops once the validation loss stops
    improving and the best epoch's weights are kept: id embeddings overfit users with few events.
    """
    if len(features) < 2:
        raise DataError("fewer than two retrieval examples in the training window")
    model.to(device).train()
    trained: nn.Module = model.query_tower if frozen_item_embeddings is not None else model
    optimizer = make_optimizer(trained, settings)
    query = DeviceQuery.of(features, profiles, device)
    # Items index the catalog's tables; an item added after the model's id tables were sized (fine-tuning
    # with new items) is legitimately beyond them and read as unknown, i.e. by its content.
    n_catalog = len(items.category_idx)
    query.check_ranges(model.query_tower.user_arch, n_catalog)
    pos = torch.as_tensor(positives, device=device)
    check_index_ranges([("positive item_idx", pos, n_catalog)])
    freq = np.maximum(item_counts.astype(np.float64), 1.0)
    log_q = torch.as_tensor(np.log(freq / freq.sum()), dtype=torch.float32, device=device)
    generator = torch.Generator().manual_seed(settings.seed)

    def step(rows: torch.Tensor) -> torch.Tensor | None:
        if len(rows) < 2:
            return None
        user = mask_user_features(
            query.take(rows),
            settings.mask_user_prob,
            settings.mask_profile_prob,
            settings.mask_recent_prob,
            generator,
        )
        q = model.query_tower(user)
        item = pos[rows]
        if frozen_item_embeddings is None:
            keep = torch.rand(len(rows), generator=generator).to(device) >= settings.mask_item_id_prob
            vec = model.item_tower(items.features(item)._replace(item_idx=item * keep))
        else:
            vec = frozen_item_embeddings[item]
        return in_batch_softmax_loss(q, vec, item, log_q[item], settings.temperature)

    validation_loss = None
    if validation is not None:
        val_query = DeviceQuery.of(validation[0], profiles, device)
        val_pos = torch.as_tensor(validation[1], device=device)

        def validation_loss() -> float:
            return retrieval_loss(model, val_query, val_pos, items, log_q, settings, frozen_item_embeddings)

    return run_epochs(
        stage,
        model,
        optimizer,
        len(features),
        step,
        settings=settings,
        device=device,
        epochs=epochs,
        checkpoint=checkpoint,
        generator=generator,
        validation_loss=validation_loss,
    )


def retrieval_loss(
    model: TwoTower,
    query: DeviceQuery,
    positives: torch.Tensor,
    items: DeviceItemTables,
    log_q: torch.Tensor,
    settings: TrainerSettings,
    frozen_item_embeddings: torch.Tensor | None = None,
) -> float:
    """Mean in-batch softmax loss over fixed batches of held-out examples, no feature masking."""
    total, steps = 0.0, 0
    for rows in torch.split(torch.arange(len(query.user), device=positives.device), settings.batch_size):
        if len(rows) < 2:
            continue
        q = model.query_tower(query.take(rows))
        item = positives[rows]
        vec = model.item_tower(items.features(item)) if frozen_item_embeddings is None else frozen_item_embeddings[item]
        total += float(in_batch_softmax_loss(q, vec, item, log_q[item], settings.temperature))
        steps += 1
    return total / max(steps, 1)


def train_ranker(
    model: DLRMRanker,
    features: QueryFeatures,
    first_items: np.ndarray,
    first_labels: np.ndarray,
    items: DeviceItemTables,
    profiles: torch.Tensor,
    negative_weights: np.ndarray,
    settings: TrainerSettings,
    device: str,
    epochs: int,
    checkpoint: Checkpointer,
    stage: str = "ranker",
    validation: tuple[QueryFeatures, np.ndarray, np.ndarray] | None = None,
) -> LoopStats:
    """BCE over N = 1 + ranker_negatives candidates per example: the event's item (label 1 for a positive,
    0 for an impressed negative) plus items sampled from ``negative_weights`` (Float[n_items + 1]) as 0.

    With ``validation`` (features, first items, labels of the newest examples) the best epoch is kept."""
    if len(features) == 0 or features.counts is None:
        raise DataError("no ranker examples in the training window")
    model.to(device).train()
    optimizer = make_optimizer(model, settings)
    query = DeviceQuery.of(features, profiles, device)
    n_catalog = len(items.category_idx)  # see train_two_tower: new items lie beyond the id tables
    query.check_ranges(model.user_arch, n_catalog)
    counts = torch.as_tensor(features.counts, device=device)
    first = torch.as_tensor(first_items, device=device)
    check_index_ranges([("candidate item_idx", first, n_catalog)])
    labels0 = torch.as_tensor(first_labels, dtype=torch.float32, device=device)
    weights = torch.as_tensor(negative_weights, dtype=torch.float32, device=device)
    n_neg = settings.ranker_negatives
    generator = torch.Generator().manual_seed(settings.seed + 1)
    neg_generator = torch.Generator(device=device).manual_seed(settings.seed + 2)
    loss_fn = nn.BCEWithLogitsLoss()

    def candidates(first_item: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> RankerTargets:
        """The event's item first, then sampled negatives.  -> (Long[b, N], Float[b, N])"""
        negatives = torch.multinomial(weights, len(first_item) * n_neg, replacement=True, generator=gen)
        cand = torch.cat([first_item.unsqueeze(1), negatives.view(len(first_item), n_neg)], dim=1)
        target = torch.zeros(cand.shape, device=device)
        target[:, 0] = labels
        return cand, target

    def step(rows: torch.Tensor) -> torch.Tensor:
        user = query.take(rows)
        cand, target = candidates(first[rows], labels0[rows], neg_generator)
        return loss_fn(model(RankerBatch(user, counts[rows], items.features(cand))), target)

    validation_loss = None
    if validation is not None and len(validation[0]) > 0:
        # Fixed validation batches (their negatives drawn once), so that epochs compare on the same task.
        val_query = DeviceQuery.of(validation[0], profiles, device)
        val_gen = torch.Generator(device=device).manual_seed(settings.seed + 3)
        val_first = torch.as_tensor(validation[1], device=device)
        val_labels = torch.as_tensor(validation[2], dtype=torch.float32, device=device)
        val_counts = torch.as_tensor(validation[0].counts, device=device)
        val_batches = []
        for rows in torch.split(torch.arange(len(validation[0]), device=device), settings.batch_size):
            cand, target = candidates(val_first[rows], val_labels[rows], val_gen)
            val_batches.append((RankerBatch(val_query.take(rows), val_counts[rows], items.features(cand)), target))

        def validation_loss() -> float:
            return sum(float(loss_fn(model(batch), target)) for batch, target in val_batches) / len(val_batches)

    return run_epochs(
        stage,
        model,
        optimizer,
        len(features),
        step,
        settings=settings,
        device=device,
        epochs=epochs,
        checkpoint=checkpoint,
        generator=generator,
        validation_loss=validation_loss,
    )
