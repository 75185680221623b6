"""Baselines trained on the same split: popularity and BPR matrix factorisation (Rendle et al. 2009)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def popularity_scores(train_items: np.ndarray, n_items: int) -> np.ndarray:
    """Interaction counts per item.  -> float32 [n_items + 1] (index 0 never recommended)"""
    counts = np.bincount(train_items, minlength=n_items + 1).astype(np.float32)
    counts[0] = -np.inf
    return counts


@dataclass
class BPRConfig:
    dim: int = 64
    epochs: int = 40
    batch_size: int = 4096
    learning_rate: float = 5e-3
    l2: float = 1e-4
    seed: int = 0


@dataclass
class BPRModel:
    user_factors: np.ndarray  # float32 [n_users + 1, d]
    item_factors: np.ndarray  # float32 [n_items + 1, d]
    item_bias: np.ndarray  # float32 [n_items + 1]

    def scores(self, users: np.ndarray) -> np.ndarray:
        """-> float32 [len(users), n_items + 1]; item 0 is never recommended."""
        out = self.user_factors[users] @ self.item_factors.T + self.item_bias[None, :]
        out[:, 0] = -np.inf
        return out


def train_bpr(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, config: BPRConfig) -> BPRModel:
    """BPR-Opt with uniformly sampled negatives that the user has not interacted with (rejection, one retry)."""
    gen = torch.Generator().manual_seed(config.seed)
    user_emb = torch.nn.Parameter(torch.randn(n_users + 1, config.dim, generator=gen) * 0.01)
    item_emb = torch.nn.Parameter(torch.randn(n_items + 1, config.dim, generator=gen) * 0.01)
    bias = torch.nn.Parameter(torch.zeros(n_items + 1))
    optimizer = torch.optim.Adam([user_emb, item_emb, bias], lr=config.learning_rate)
    pairs = np.unique(users.astype(np.int64) * (n_items + 1) + items)
    u_all = torch.as_tensor(pairs // (n_items + 1))
    i_all = torch.as_tensor(pairs % (n_items + 1))
    known = torch.as_tensor(pairs)
    for _ in range(config.epochs):
        order = torch.randperm(len(u_all), generator=gen)
        for rows in torch.split(order, config.batch_size):
            u, i = u_all[rows], i_all[rows]
            j = torch.randint(1, n_items + 1, (len(rows),), generator=gen)
            clash = torch.isin(u * (n_items + 1) + j, known)
            j = torch.where(clash, torch.randint(1, n_items + 1, (len(rows),), generator=gen), j)
            pu, qi, qj = user_emb[u], item_emb[i], item_emb[j]
            diff = (pu * (qi - qj)).sum(1) + bias[i] - bias[j]
            reg = config.l2 * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / len(rows)
            loss = -F.logsigmoid(diff).mean() + reg
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return BPRModel(
        user_factors=user_emb.detach().numpy(),
        item_factors=item_emb.detach().numpy(),
        item_bias=bias.detach().numpy(),
    )
