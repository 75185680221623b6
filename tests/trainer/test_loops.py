"""The shared epoch loop (skipped batches, early stopping, resume) and the one-time index check of the loops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.models.two_tower import TwoTower, TwoTowerConfig
from trainer.settings import TrainerSettings
from trainer.train.loops import Checkpointer, make_optimizer, run_epochs, train_two_tower
from trainer.train.tables import DeviceItemTables, QueryFeatures

SETTINGS = TrainerSettings(device="cpu", progress=False, batch_size=16, patience=2, learning_rate=1e-2)


def _fit_problem() -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    return torch.nn.Linear(3, 1), x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def test_run_epochs_skips_batches_the_step_declines_and_counts_the_rest() -> None:
    model, x, y = _fit_problem()
    optimizer = make_optimizer(model, SETTINGS)
    seen: list[int] = []

    def step(rows: torch.Tensor) -> torch.Tensor | None:
        seen.append(len(rows))
        if len(seen) % 2 == 0:
            return None  # every second batch is declined: no optimizer step, not counted
        return torch.nn.functional.mse_loss(model(x[rows]), y[rows])

    stats = run_epochs("fit", model, optimizer, 64, step, settings=SETTINGS, device="cpu", epochs=3,
                       checkpoint=Checkpointer(None), generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert len(seen) == 12 and stats.epochs == 3
    assert stats.examples_seen == 6 * 16
    assert not model.training
    before = model.weight.detach().clone()
    declined = run_epochs("fit", model, optimizer, 64, lambda rows: None, settings=SETTINGS, device="cpu",
                          epochs=2, checkpoint=Checkpointer(None), generator=torch.Generator())  # fmt: skip
    assert declined.examples_seen == 0 and declined.epoch_losses == [0.0, 0.0]
    assert torch.equal(model.weight.detach(), before)  # no optimizer step without a loss


def test_run_epochs_stops_after_patience_and_keeps_the_best_epoch() -> None:
    model, x, y = _fit_problem()
    optimizer = make_optimizer(model, SETTINGS)
    val_losses = iter([3.0, 1.0, 2.0, 2.5, 0.1, 0.1])
    weights_after_epoch: list[torch.Tensor] = []

    def validation_loss() -> float:
        assert not model.training and not torch.is_grad_enabled()
        weights_after_epoch.append(model.weight.detach().clone())
        return next(val_losses)

    def step(rows: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(x[rows]), y[rows])

    stats = run_epochs("fit", model, optimizer, 64, step, settings=SETTINGS, device="cpu", epochs=6,
                       checkpoint=Checkpointer(None), generator=torch.Generator().manual_seed(0),
                       validation_loss=validation_loss)  # fmt: skip
    assert stats.epochs == 4  # epochs 3 and 4 were worse than epoch 2: patience 2 reached
    assert stats.best_epoch == 2
    torch.testing.assert_close(model.weight.detach(), weights_after_epoch[1])


def test_run_epochs_resumes_after_the_last_checkpointed_epoch_with_the_same_batches(tmp_path: Path) -> None:
    _, x, y = _fit_problem()

    def batches_of(epochs: int, directory: Path) -> tuple[list[list[int]], int]:
        model = torch.nn.Linear(3, 1)
        optimizer = make_optimizer(model, SETTINGS)
        drawn: list[list[int]] = []

        def step(rows: torch.Tensor) -> torch.Tensor:
            drawn.append(rows.tolist())
            return torch.nn.functional.mse_loss(model(x[rows]), y[rows])

        stats = run_epochs("fit", model, optimizer, 64, step, settings=SETTINGS, device="cpu", epochs=epochs,
                           checkpoint=Checkpointer(directory), generator=torch.Generator().manual_seed(0))  # fmt: skip
        return drawn, stats.resumed_from_epoch

    uninterrupted, _ = batches_of(2, tmp_path / "straight")
    first, _ = batches_of(1, tmp_path / "interrupted")
    resumed, resumed_from = batches_of(2, tmp_path / "interrupted")
    assert resumed_from == 1
    assert first == uninterrupted[:4] and resumed == uninterrupted[4:]


def _two_tower() -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(TwoTowerConfig(n_users=10, n_items=30, n_categories=4, profile_vocab_sizes=[3],
                                   text_dim=2, image_dim=0, embedding_dim=8, id_dim=8))  # fmt: skip


def _items() -> DeviceItemTables:
    return DeviceItemTables(torch.randint(0, 5, (31,)), torch.rand(31, 2), torch.rand(31, 2), torch.rand(31, 0))


@pytest.mark.parametrize(
    "field, value, message",
    [("user", 11, "user_idx out of range: values in [2, 11], valid are 0..10"),
     ("recent", 40, "recent_items out of range: values in [0, 40], valid are 0..30"),
     ("context", 24, "context_idx[:, 1] out of range: values in [0, 24], valid are 0..23")],
)  # fmt: skip
def test_training_refuses_examples_outside_the_model_tables_before_any_step(
    field: str, value: int, message: str, tmp_path: Path
) -> None:
    n = 8
    features = QueryFeatures(
        user=np.arange(1, n + 1, dtype=np.int64),
        recent=np.zeros((n, 20), np.int32),
        context=np.zeros((n, 3), np.int16),
        counts=None,
    )
    column = getattr(features, field)
    if field == "context":
        column[0, 1] = value
    else:
        column.reshape(-1)[0] = value
    profiles = torch.zeros(11, 1, dtype=torch.long)
    with pytest.raises(ValueError) as info:
        train_two_tower(_two_tower(), features, np.ones(n, np.int64), _items(), profiles, np.ones(31),
                        SETTINGS, "cpu", 1, Checkpointer(tmp_path))  # fmt: skip
    assert str(info.value) == message
    assert not list(tmp_path.iterdir())  # refused before the first epoch was checkpointed
