"""Two-Tower retrieval model (query tower, item tower) with in-batch sampled softmax and logQ correction."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.features import DEVICE_VOCAB
from trainer.models.layers import MaskedMeanPool, check_index_range, mlp

N_HOURS = 24
N_WEEKDAYS = 7


@dataclass
class TwoTowerConfig:
    n_users: int
    n_items: int
    n_categories: int
    profile_vocab_sizes: list[int]
    text_dim: int
    image_dim: int
    embedding_dim: int = 64
    id_dim: int = 64
    context_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [256])


class QueryTower(nn.Module):
    """User id + profile + recent items + context -> L2-normalised query vector.

    user_idx Long[B], profile_idx Long[B, P], recent_items Long[B, R], context_idx Long[B, 3] -> Float[B, D].
    Index 0 is "unknown" in every table, so an anonymous user (user_idx = 0, profile zeros) still gets a query
    from the recent items and context; training drops those inputs at random so that index 0 is learned.
    """

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.n_users = config.n_users + 1
        self.context_sizes = [len(DEVICE_VOCAB), N_HOURS, N_WEEKDAYS]
        self.n_items = config.n_items + 1
        self.profile_sizes = list(config.profile_vocab_sizes)
        self.user_embedding = nn.Embedding(self.n_users, config.id_dim, sparse=True)
        self.profile_embeddings = nn.ModuleList(nn.Embedding(n, config.context_dim) for n in self.profile_sizes)
        self.recent_pool = MaskedMeanPool(nn.Embedding(self.n_items, config.id_dim, padding_idx=0))
        self.device_embedding = nn.Embedding(len(DEVICE_VOCAB), config.context_dim)
        self.hour_embedding = nn.Embedding(N_HOURS, config.context_dim)
        self.weekday_embedding = nn.Embedding(N_WEEKDAYS, config.context_dim)
        width = 2 * config.id_dim + config.context_dim * (3 + len(self.profile_sizes))
        self.mlp = mlp(width, config.hidden, config.embedding_dim)
        nn.init.normal_(self.user_embedding.weight, std=0.02)
        nn.init.normal_(self.recent_pool.table.weight, std=0.02)

    def forward(
        self,
        user_idx: torch.Tensor,
        profile_idx: torch.Tensor,
        recent_items: torch.Tensor,
        context_idx: torch.Tensor,
    ) -> torch.Tensor:
        check_index_range("user_idx", user_idx, self.n_users)
        check_index_range("recent_items", recent_items, self.n_items)
        for j, size in enumerate(self.context_sizes):
            check_index_range("context_idx[:, " + str(j) + "]", context_idx[:, j], size)
        parts = [self.user_embedding(user_idx), self.recent_pool(recent_items)]
        for j, table in enumerate(self.profile_embeddings):
            column = profile_idx[:, j]
            check_index_range("profile_idx[:, " + str(j) + "]", column, self.profile_sizes[j])
            parts.append(table(column))
        parts += [
            self.device_embedding(context_idx[:, 0]),
            self.hour_embedding(context_idx[:, 1]),
            self.weekday_embedding(context_idx[:, 2]),
        ]
        return F.normalize(self.mlp(torch.cat(parts, dim=1)), dim=-1)


class ItemTower(nn.Module):
    """Item id + category + text/image embeddings -> L2-normalised item vector.

    item_idx Long[B], item_cat Long[B], item_text Float[B, T], item_image Float[B, I] -> Float[B, D].
    A new item (item_idx = 0) is embedded from its category and content alone.
    """

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.n_items = config.n_items + 1
        self.n_categories = config.n_categories + 1
        self.item_embedding = nn.Embedding(self.n_items, config.id_dim)
        self.category_embedding = nn.Embedding(self.n_categories, config.context_dim)
        content = config.text_dim + config.image_dim
        self.mlp = mlp(config.id_dim + config.context_dim + content, config.hidden, config.embedding_dim)
        nn.init.normal_(self.item_embedding.weight, std=0.02)

    def forward(
        self, item_idx: torch.Tensor, item_cat: torch.Tensor, item_text: torch.Tensor, item_image: torch.Tensor
    ) -> torch.Tensor:
        check_index_range("item_idx", item_idx, self.n_items)
        check_index_range("item_cat", item_cat, self.n_categories)
        parts = [self.item_embedding(item_idx), self.category_embedding(item_cat), item_text, item_image]
        return self.mlp(torch.cat(parts, dim=1))


class TwoTower(nn.Module):
    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.config = config
        self.query_tower = QueryTower(config)
        self.item_tower = ItemTower(config)


def in_batch_softmax_loss(
    query: torch.Tensor,
    items: torch.Tensor,
    item_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Sampled softmax over the batch's items with logQ correction (Yi et al., RecSys 2019).

    query Float[B, D], items Float[B, D] (row b is the positive of query b), item_ids Long[B],
    log_q Float[B] = log of each item's sampling probability (its share of training examples) -> scalar.
    Other rows holding the same item as the positive are masked, not counted as negatives.
    """
    logits = query @ items.T / temperature - log_q.unsqueeze(0)
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    eye = torch.eye(len(item_ids), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(len(item_ids), device=logits.device)
    return F.cross_entropy(logits, target)


def mask_query_inputs(
    user_idx: torch.Tensor,
    profile_idx: torch.Tensor,
    recent_items: torch.Tensor,
    p_user: float,
    p_profile: float,
    p_recent: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training-time feature dropout: replace each input by "unknown" (0) with its probability, per example.

    Returns new tensors (inputs untouched): user_idx Long[B], profile_idx Long[B, P], recent_items Long[B, R].
    """
    batch = user_idx.shape[0]
    device = user_idx.device

    def keep(p: float) -> torch.Tensor:
        return torch.rand(batch, generator=generator, device="cpu").to(device) >= p

    user = user_idx * keep(p_user)
    profile = profile_idx * keep(p_profile).unsqueeze(1)
    recent = recent_items * keep(p_recent).unsqueeze(1)
    return user, profile, recent
