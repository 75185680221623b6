"""DLRM ranker (Naumov et al. 2019, TorchRec's dlrm.py layout): bottom MLP, embeddings, dot interaction, top MLP."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from streamrec.features import DEVICE_VOCAB
from trainer.models.layers import MaskedMeanPool, check_index_range, mlp
from trainer.models.two_tower import N_HOURS, N_WEEKDAYS


@dataclass
class DLRMConfig:
    n_users: int
    n_items: int
    n_categories: int
    profile_vocab_sizes: list[int]
    n_user_dense: int
    n_item_dense: int
    text_dim: int
    image_dim: int
    embedding_dim: int = 16
    bottom_hidden: list[int] = field(default_factory=lambda: [64])
    top_hidden: list[int] = field(default_factory=lambda: [128, 64])


class DotInteraction(nn.Module):
    """Pairwise dot products of F feature vectors (upper triangle, no diagonal).

    features Float[M, F, E] -> Float[M, F * (F - 1) / 2].
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        rows, cols = torch.triu_indices(n_features, n_features, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        gram = torch.bmm(features, features.transpose(1, 2))
        rows: torch.Tensor = self.rows  # type: ignore[assignment]
        cols: torch.Tensor = self.cols  # type: ignore[assignment]
        return gram[:, rows, cols]


class DLRMRanker(nn.Module):
    """Scores N candidate items per request.

    user_idx Long[B], profile_idx Long[B, P], recent_items Long[B, R], context_idx Long[B, 3],
    user_dense Float[B, U] (raw counts; log1p applied here), item_idx Long[B, N], item_cat Long[B, N],
    item_dense Float[B, N, Q], item_text Float[B, N, T], item_image Float[B, N, I] -> logits Float[B, N].
    """

    def __init__(self, config: DLRMConfig) -> None:
        super().__init__()
        e = config.embedding_dim
        self.n_users = config.n_users + 1
        self.context_sizes = [len(DEVICE_VOCAB), N_HOURS, N_WEEKDAYS]
        self.n_items = config.n_items + 1
        self.n_categories = config.n_categories + 1
        self.profile_sizes = list(config.profile_vocab_sizes)
        self.user_dense_bottom = mlp(config.n_user_dense, config.bottom_hidden, e, final_activation=True)
        content = config.n_item_dense + config.text_dim + config.image_dim
        self.item_dense_bottom = mlp(content, config.bottom_hidden, e, final_activation=True)
        self.user_embedding = nn.Embedding(self.n_users, e, sparse=True)
        self.profile_embeddings = nn.ModuleList(nn.Embedding(n, e) for n in self.profile_sizes)
        self.device_embedding = nn.Embedding(len(DEVICE_VOCAB), e)
        self.hour_embedding = nn.Embedding(N_HOURS, e)
        self.weekday_embedding = nn.Embedding(N_WEEKDAYS, e)
        self.item_embedding = nn.Embedding(self.n_items, e)
        self.recent_pool = MaskedMeanPool(self.item_embedding)
        self.category_embedding = nn.Embedding(self.n_categories, e)
        # user dense, user id, profile fields, 3 context, recent items | item id, category, item dense
        self.n_user_side = 2 + len(self.profile_sizes) + 3 + 1
        n_features = self.n_user_side + 3
        self.interaction = DotInteraction(n_features)
        top_in = 2 * e + n_features * (n_features - 1) // 2
        self.top = mlp(top_in, config.top_hidden, 1)
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=0.05)

    def forward(
        self,
        user_idx: torch.Tensor,
        profile_idx: torch.Tensor,
        recent_items: torch.Tensor,
        context_idx: torch.Tensor,
        user_dense: torch.Tensor,
        item_idx: torch.Tensor,
        item_cat: torch.Tensor,
        item_dense: torch.Tensor,
        item_text: torch.Tensor,
        item_image: torch.Tensor,
    ) -> torch.Tensor:
        check_index_range("user_idx", user_idx, self.n_users)
        check_index_range("recent_items", recent_items, self.n_items)
        check_index_range("item_idx", item_idx, self.n_items)
        check_index_range("item_cat", item_cat, self.n_categories)
        for j, size in enumerate(self.context_sizes):
            check_index_range("context_idx[:, " + str(j) + "]", context_idx[:, j], size)
        batch, n_items = item_idx.shape
        dense_vec = self.user_dense_bottom(torch.log1p(user_dense.clamp(min=0.0)))
        user_side = [dense_vec, self.user_embedding(user_idx)]
        for j, table in enumerate(self.profile_embeddings):
            column = profile_idx[:, j]
            check_index_range("profile_idx[:, " + str(j) + "]", column, self.profile_sizes[j])
            user_side.append(table(column))
        user_side += [
            self.device_embedding(context_idx[:, 0]),
            self.hour_embedding(context_idx[:, 1]),
            self.weekday_embedding(context_idx[:, 2]),
            self.recent_pool(recent_items),
        ]
        user_stack = torch.stack(user_side, dim=1)  # [B, F_u, E]
        content = torch.cat([item_dense, item_text, item_image], dim=2)  # [B, N, Q + T + I]
        item_content_vec = self.item_dense_bottom(content)  # [B, N, E]
        item_stack = torch.stack(
            [self.item_embedding(item_idx), self.category_embedding(item_cat), item_content_vec], dim=2
        )  # [B, N, 3, E]
        user_expanded = user_stack.unsqueeze(1).expand(batch, n_items, user_stack.shape[1], user_stack.shape[2])
        features = torch.cat([user_expanded, item_stack], dim=2).reshape(batch * n_items, -1, user_stack.shape[2])
        pairs = self.interaction(features)
        dense_rep = dense_vec.unsqueeze(1).expand(batch, n_items, dense_vec.shape[1]).reshape(batch * n_items, -1)
        top_in = torch.cat([dense_rep, item_content_vec.reshape(batch * n_items, -1), pairs], dim=1)
        return self.top(top_in).reshape(batch, n_items)
