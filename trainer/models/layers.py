"""Small building blocks shared by both models."""

from __future__ import annotations

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


class MaskedMeanPool(nn.Module):
    """Mean of item embeddings over the non-padding positions (index 0 = padding).

    ids: Long[B, R] -> Float[B, E] (zeros where every position is padding).
    """

    def __init__(self, table: nn.Embedding) -> None:
        super().__init__()
        self.table = table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        vectors = self.table(ids)
        mask = (ids > 0).unsqueeze(-1).to(vectors.dtype)
        return (vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def check_index_range(name: str, ids: torch.Tensor, size: int) -> None:
    """Raise a readable error instead of an opaque index error deep inside an embedding lookup."""
    if ids.numel() > 0:
        low = int(ids.min().item())
        high = int(ids.max().item())
        if low < 0 or high >= size:
            raise ValueError(
                name + " out of range: values in [" + str(low) + ", " + str(high) + "], valid are 0.." + str(size - 1)
            )
