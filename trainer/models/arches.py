"""Arch modules both models are built from (TorchRec's split): sparse arches embed indices, a dense arch
turns float features into one embedding-sized vector. Each model owns its own instances (and weights)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from streamrec.features import CONTEXT_VOCAB_SIZES
from trainer.models.inputs import ItemFeatures, UserFeatures
from trainer.models.layers import MaskedMeanPool, known_columns, known_index, mlp


class UserArch(nn.Module):
    """The user side's embeddings: user id, profile fields, context (device, hour, weekday) and, with
    ``n_recent_items`` > 0, the mean of the recent items over a table of its own.

    UserFeatures over B -> list of Float[B, *] vectors in the order
    [user id (id_dim), recent items (id_dim, own table only), each profile field, device, hour, weekday
    (side_dim each)]. A model that embeds recent items with a table it shares (the DLRM with its candidates)
    pools them itself. Out-of-range indices embed as row 0 (unknown), see ``known_index``.
    """

    def __init__(
        self, n_users: int, profile_sizes: list[int], id_dim: int, side_dim: int, n_recent_items: int = 0
    ) -> None:
        super().__init__()
        self.n_users = n_users
        self.profile_sizes = list(profile_sizes)
        self.context_sizes = list(CONTEXT_VOCAB_SIZES)
        # Creation order fixes the random initialisation: keep it (user, profile, recent, context).
        self.user_embedding = nn.Embedding(n_users, id_dim, sparse=True)
        self.profile_embeddings = nn.ModuleList(nn.Embedding(n, side_dim) for n in self.profile_sizes)
        self.recent_pool: MaskedMeanPool | None = None
        if n_recent_items > 0:
            self.recent_pool = MaskedMeanPool(nn.Embedding(n_recent_items, id_dim, padding_idx=0))
        self.context_embeddings = nn.ModuleList(nn.Embedding(n, side_dim) for n in self.context_sizes)
        self.n_vectors = 1 + int(n_recent_items > 0) + len(self.profile_sizes) + len(self.context_sizes)
        self.register_buffer("profile_limits", torch.tensor(self.profile_sizes, dtype=torch.long), persistent=False)
        self.register_buffer("context_limits", torch.tensor(self.context_sizes, dtype=torch.long), persistent=False)

    def forward(self, features: UserFeatures) -> list[Tensor]:
        parts = [self.user_embedding(known_index(features.user_idx, self.n_users))]
        if self.recent_pool is not None:
            parts.append(self.recent_pool(features.recent_items))
        profile_limits: Tensor = self.profile_limits  # type: ignore[assignment]
        context_limits: Tensor = self.context_limits  # type: ignore[assignment]
        profile = known_columns(features.profile_idx, profile_limits)
        for j, table in enumerate(self.profile_embeddings):
            parts.append(table(profile[:, j]))
        context = known_columns(features.context_idx, context_limits)
        for j, table in enumerate(self.context_embeddings):
            parts.append(table(context[:, j]))
        return parts


class ItemArch(nn.Module):
    """An item's id and category embeddings.  ItemFeatures over S -> [Float[S, id_dim], Float[S, category_dim]]

    Index 0 is the unknown item / category (a new item is embedded from its category and content alone).
    """

    def __init__(self, n_items: int, n_categories: int, id_dim: int, category_dim: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.n_categories = n_categories
        self.item_embedding = nn.Embedding(n_items, id_dim)
        self.category_embedding = nn.Embedding(n_categories, category_dim)

    def forward(self, items: ItemFeatures) -> list[Tensor]:
        return [
            self.item_embedding(known_index(items.item_idx, self.n_items)),
            self.category_embedding(known_index(items.item_cat, self.n_categories)),
        ]


class DenseArch(nn.Module):
    """MLP with a final ReLU over float features.  Float[*, in_dim] -> Float[*, out_dim]"""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int) -> None:
        super().__init__()
        self.mlp = mlp(in_dim, hidden, out_dim, final_activation=True)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)
