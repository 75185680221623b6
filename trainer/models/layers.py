"""Small building blocks shared by both models, and how they treat indices outside a table."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn


def mlp(in_dim: int, hidden: list[int], out_dim: int, final_activation: bool = False) -> nn.Sequential:
    """Linear + ReLU stack: [*, in_dim] -> [*, out_dim]."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.ReLU()]
        last = width
    layers.append(nn.Linear(last, out_dim))
    if final_activation:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def known_index(ids: torch.Tensor, size: int) -> torch.Tensor:
    """``ids`` with every value outside 0..size-1 replaced by 0, the "unknown" row.  Long[*] -> Long[*]

    Inside the models (and so the exported graph) an out-of-range index is treated as an unknown id, as
    serving does for ids missing from the export's maps: element-wise clamp and select, no host-device sync
    (reading back a min/max per input would stall the GPU on every call). Callers that want an error for
    such indices check once, outside the model, with :func:`check_index_ranges`.
    """
    ids = ids.clamp(min=0)
    return torch.where(ids < size, ids, 0)


def known_columns(ids: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """:func:`known_index` for C columns at once (fewer ops than one call per column: each op costs a few
    microseconds in the TorchScript interpreter or a kernel launch on the GPU).  Long[B, C], sizes Long[C]
    -> Long[B, C]"""
    ids = ids.clamp(min=0)
    return torch.where(ids < sizes, ids, 0)


class MaskedMeanPool(nn.Module):
    """Mean of item embeddings over the non-padding positions (index 0 = padding; out of range counts as 0).

    ids: Long[B, R] -> Float[B, E] (zeros where every position is padding).
    """

    def __init__(self, table: nn.Embedding) -> None:
        super().__init__()
        self.table = table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = known_index(ids, self.table.num_embeddings)
        vectors = self.table(ids)
        mask = (ids > 0).unsqueeze(-1).to(vectors.dtype)
        return (vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def check_index_ranges(columns: Iterable[tuple[str, torch.Tensor | np.ndarray, int]]) -> None:
    """Raise one readable ValueError naming every (name, ids, size) whose ids leave 0..size-1.

    Meant for whole example tables before a training loop or an evaluation, not per batch: it reads the
    minima and maxima back to the host once for all columns.
    """
    named = [(name, torch.as_tensor(ids), size) for name, ids, size in columns]
    named = [(name, ids, size) for name, ids, size in named if ids.numel() > 0]
    if not named:
        return
    bounds = torch.stack([torch.stack([ids.min(), ids.max()]).long().cpu() for _, ids, _ in named]).tolist()
    problems = [
        f"{name} out of range: values in [{low}, {high}], valid are 0..{size - 1}"
        for (name, _, size), (low, high) in zip(named, bounds, strict=True)
        if low < 0 or high >= size
    ]
    if problems:
        raise ValueError("; ".join(problems))
