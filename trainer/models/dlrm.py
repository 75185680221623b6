"""DLRM ranker (Naumov et al. 2019, in TorchRec's dlrm.py layout): dense arches, sparse arches, dot
interaction, over arch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from trainer.models.arches import DenseArch, ItemArch, UserArch
from trainer.models.inputs import RankerBatch, ranker_batch_from_dict
from trainer.models.layers import MaskedMeanPool, mlp


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


class InteractionArch(nn.Module):
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


class OverArch(nn.Module):
    """Top MLP to one logit.  Float[M, in_dim] -> Float[M]"""

    def __init__(self, in_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.mlp = mlp(in_dim, hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).squeeze(-1)


class DLRMRanker(nn.Module):
    """Scores N candidate items per request.  RankerBatch (B requests, N candidates) -> logits Float[B, N]

    Feature vectors (E = embedding_dim each) entering the interaction, per candidate: user counts (log1p,
    dense arch), user id, profile fields, device, hour, weekday, recent items (mean over the item table the
    candidates use) | candidate id, category, content (item dense + text + image, dense arch). The over arch
    reads the two dense vectors and the pairwise dot products.
    """

    def __init__(self, config: DLRMConfig) -> None:
        super().__init__()
        e = config.embedding_dim
        self.n_users = config.n_users + 1
        self.n_items = config.n_items + 1
        self.n_categories = config.n_categories + 1
        self.profile_sizes = list(config.profile_vocab_sizes)
        # Creation order fixes the random initialisation.
        self.user_dense_arch = DenseArch(config.n_user_dense, config.bottom_hidden, e)
        content = config.n_item_dense + config.text_dim + config.image_dim
        self.item_content_arch = DenseArch(content, config.bottom_hidden, e)
        self.user_arch = UserArch(self.n_users, self.profile_sizes, e, e)
        self.item_arch = ItemArch(self.n_items, self.n_categories, e, e)
        self.recent_pool = MaskedMeanPool(self.item_arch.item_embedding)
        n_features = 1 + self.user_arch.n_vectors + 1 + 3
        self.interaction = InteractionArch(n_features)
        self.over_arch = OverArch(2 * e + n_features * (n_features - 1) // 2, config.top_hidden)
        for table in (self.user_arch.user_embedding, self.item_arch.item_embedding):
            nn.init.normal_(table.weight, std=0.05)

    def forward(self, batch: RankerBatch) -> torch.Tensor:
        cands = batch.candidates
        n_batch, n_cands = cands.item_idx.shape
        dense_vec = self.user_dense_arch(torch.log1p(batch.user_dense.clamp(min=0.0)))  # [B, E]
        user_side = [dense_vec] + self.user_arch(batch.user) + [self.recent_pool(batch.user.recent_items)]
        user_stack = torch.stack(user_side, dim=1)  # [B, F_u, E]
        content = torch.cat([cands.item_dense, cands.item_text, cands.item_image], dim=2)  # [B, N, Q + T + I]
        content_vec = self.item_content_arch(content)  # [B, N, E]
        item_stack = torch.stack(self.item_arch(cands) + [content_vec], dim=2)  # [B, N, 3, E]
        n_user, e = user_stack.shape[1], user_stack.shape[2]
        user_expanded = user_stack.unsqueeze(1).expand(n_batch, n_cands, n_user, e)
        features = torch.cat([user_expanded, item_stack], dim=2).reshape(n_batch * n_cands, -1, e)
        pairs = self.interaction(features)
        dense_rep = dense_vec.unsqueeze(1).expand(n_batch, n_cands, e).reshape(n_batch * n_cands, e)
        over_in = torch.cat([dense_rep, content_vec.reshape(n_batch * n_cands, e), pairs], dim=1)
        return self.over_arch(over_in).reshape(n_batch, n_cands)


class ExportedRanker(nn.Module):
    """The ranker as exported: one dict keyed by ``streamrec.features.RANKER_INPUTS`` (shapes as in
    :class:`trainer.models.inputs.RankerBatch`) -> logits Float[B, N]."""

    def __init__(self, ranker: DLRMRanker) -> None:
        super().__init__()
        self.ranker = ranker

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.ranker(ranker_batch_from_dict(inputs))
