"""Two-Tower retrieval model (query tower, item tower) with in-batch sampled softmax and logQ correction."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.arches import ItemArch, UserArch
from trainer.models.inputs import ItemFeatures, UserFeatures, user_features_from_dict
from trainer.models.layers import mlp


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

    UserFeatures over B -> Float[B, D]. Index 0 is "unknown" in every table, so an anonymous user
    (user_idx = 0, profile zeros) still gets a query from the recent items and context; training drops those
    inputs at random so that index 0 is learned.
    """

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.user_arch = UserArch(
            config.n_users + 1, config.profile_vocab_sizes, config.id_dim, config.context_dim, config.n_items + 1
        )
        width = 2 * config.id_dim + config.context_dim * (len(config.profile_vocab_sizes) + 3)
        self.mlp = mlp(width, config.hidden, config.embedding_dim)
        nn.init.normal_(self.user_arch.user_embedding.weight, std=0.02)
        if self.user_arch.recent_pool is not None:  # always: built above with its own recent-items table
            nn.init.normal_(self.user_arch.recent_pool.table.weight, std=0.02)

    def forward(self, features: UserFeatures) -> torch.Tensor:
        return F.normalize(self.mlp(torch.cat(self.user_arch(features), dim=1)), dim=-1)


class ItemTower(nn.Module):
    """Item id + category + text/image embeddings -> L2-normalised item vector.

    ItemFeatures over [M] -> Float[M, D] (item_dense is the ranker's and not read here).
    A new item (item_idx = 0) is embedded from its category and content alone.
    """

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.item_arch = ItemArch(config.n_items + 1, config.n_categories + 1, config.id_dim, config.context_dim)
        content = config.text_dim + config.image_dim
        self.mlp = mlp(config.id_dim + config.context_dim + content, config.hidden, config.embedding_dim)
        nn.init.normal_(self.item_arch.item_embedding.weight, std=0.02)

    def forward(self, items: ItemFeatures) -> torch.Tensor:
        parts = self.item_arch(items) + [items.item_text, items.item_image]
        return self.mlp(torch.cat(parts, dim=1))


class TwoTower(nn.Module):
    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.config = config
        self.query_tower = QueryTower(config)
        self.item_tower = ItemTower(config)


class ExportedQueryTower(nn.Module):
    """The query tower as exported: one dict keyed by ``streamrec.features.QUERY_TOWER_INPUTS``.

    {user_idx Long[B], profile_idx Long[B, P], recent_items Long[B, R], context_idx Long[B, 3]} -> Float[B, D]
    """

    def __init__(self, tower: QueryTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.tower(user_features_from_dict(inputs))


class ExportedItemContentEncoder(nn.Module):
    """The item tower's content-only path as exported, for items added after training (no learned id).

    One dict keyed by ``streamrec.features.CONTENT_ENCODER_INPUTS``:
    {item_cat Long[M] (categories.json index, 0 = unknown), item_price Float[M],
    text_embedding Float[M, R_t] (the raw sentence embedding), image_embedding Float[M, R_i]}
    -> {item_embedding Float[M, D], item_dense Float[M, 2], item_text Float[M, T], item_image Float[M, I]}.
    It applies the training catalog's PCA projections (held as buffers), sets ``log_popularity`` to 0 (no
    interactions yet) and runs the item tower with ``item_idx = 0``: exactly the vectors the trainer computes
    for an unknown item.
    """

    def __init__(
        self,
        tower: ItemTower,
        text_mean: torch.Tensor,
        text_components: torch.Tensor,
        text_scale: float,
        image_mean: torch.Tensor,
        image_components: torch.Tensor,
        image_scale: float,
    ) -> None:
        super().__init__()
        self.tower = tower
        self.register_buffer("text_mean", text_mean.float())
        self.register_buffer("text_components", text_components.float())
        self.register_buffer("image_mean", image_mean.float())
        self.register_buffer("image_components", image_components.float())
        self.text_scale = float(text_scale)
        self.image_scale = float(image_scale)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        category = inputs["item_cat"]
        price = torch.nan_to_num(inputs["item_price"].float(), nan=0.0, posinf=0.0, neginf=0.0)
        text_mean: torch.Tensor = self.text_mean  # type: ignore[assignment]
        text_components: torch.Tensor = self.text_components  # type: ignore[assignment]
        image_mean: torch.Tensor = self.image_mean  # type: ignore[assignment]
        image_components: torch.Tensor = self.image_components  # type: ignore[assignment]
        text = (inputs["text_embedding"].float() - text_mean) @ text_components / self.text_scale
        image = (inputs["image_embedding"].float() - image_mean) @ image_components / self.image_scale
        dense = torch.stack([torch.zeros_like(price), torch.log1p(torch.clamp(price, min=0.0))], dim=1)
        features = ItemFeatures(
            item_idx=torch.zeros_like(category),
            item_cat=category,
            item_dense=dense,
            item_text=text,
            item_image=image,
        )
        return {"item_embedding": self.tower(features), "item_dense": dense, "item_text": text, "item_image": image}


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


def mask_user_features(
    features: UserFeatures,
    p_user: float,
    p_profile: float,
    p_recent: float,
    generator: torch.Generator | None = None,
) -> UserFeatures:
    """Training-time feature dropout: replace each input by "unknown" (0) with its probability, per example.

    Returns new tensors (inputs untouched); the context is kept.
    """
    batch = features.user_idx.shape[0]
    device = features.user_idx.device

    def keep(p: float) -> torch.Tensor:
        return torch.rand(batch, generator=generator, device="cpu").to(device) >= p

    return features._replace(
        user_idx=features.user_idx * keep(p_user),
        profile_idx=features.profile_idx * keep(p_profile).unsqueeze(1),
        recent_items=features.recent_items * keep(p_recent).unsqueeze(1),
    )
