"""Every arch compiles with torch.jit.script and the compiled module computes what the eager one does."""

from __future__ import annotations

import warnings

import pytest
import torch

from trainer.models.arches import DenseArch, ItemArch, UserArch
from trainer.models.dlrm import DLRMConfig, DLRMRanker, InteractionArch, OverArch
from trainer.models.inputs import ItemFeatures, RankerBatch, UserFeatures
from trainer.models.layers import MaskedMeanPool
from trainer.models.two_tower import ItemTower, QueryTower, TwoTowerConfig

B, P, R, N = 4, 2, 6, 5
PROFILE_SIZES = [3, 4]


def _script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(module.eval())


def _user() -> UserFeatures:
    gen = torch.Generator().manual_seed(0)
    return UserFeatures(
        user_idx=torch.randint(0, 9, (B,), generator=gen),  # Long[B]
        profile_idx=torch.stack([torch.randint(0, n, (B,), generator=gen) for n in PROFILE_SIZES], 1),  # [B, P]
        recent_items=torch.randint(0, 12, (B, R), generator=gen),  # Long[B, R]
        context_idx=torch.tensor([[0, 0, 0], [1, 23, 6], [3, 12, 2], [2, 5, 4]]),  # Long[B, 3]
    )


def _items(*shape: int) -> ItemFeatures:
    gen = torch.Generator().manual_seed(1)
    return ItemFeatures(
        item_idx=torch.randint(0, 12, shape, generator=gen),
        item_cat=torch.randint(0, 4, shape, generator=gen),
        item_dense=torch.rand(*shape, 2, generator=gen),
        item_text=torch.rand(*shape, 3, generator=gen),
        item_image=torch.rand(*shape, 0),
    )


def _same(eager: torch.nn.Module, *inputs: object) -> object:
    torch.manual_seed(0)
    scripted = _script(eager)
    with torch.no_grad():
        expected, got = eager(*inputs), scripted(*inputs)
    if isinstance(expected, list):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b)
    else:
        torch.testing.assert_close(got, expected)
    return expected


@pytest.mark.parametrize("n_recent_items", [0, 12])
def test_user_arch_scripts_with_and_without_its_own_recent_items_table(n_recent_items: int) -> None:
    arch = UserArch(9, PROFILE_SIZES, id_dim=5, side_dim=3, n_recent_items=n_recent_items)
    parts = _same(arch, _user())
    assert isinstance(parts, list) and len(parts) == arch.n_vectors == 1 + (n_recent_items > 0) + P + 3
    assert parts[0].shape == (B, 5) and parts[-1].shape == (B, 3)


def test_item_arch_scripts_for_any_leading_shape() -> None:
    arch = ItemArch(12, 4, id_dim=5, category_dim=3)
    flat = _same(arch, _items(N))
    nested = _same(arch, _items(B, N))
    assert [t.shape for t in flat] == [(N, 5), (N, 3)]  # type: ignore[union-attr]
    assert [t.shape for t in nested] == [(B, N, 5), (B, N, 3)]  # type: ignore[union-attr]


def test_dense_arch_scripts() -> None:
    out = _same(DenseArch(7, [8], 4), torch.rand(B, N, 7))
    assert out.shape == (B, N, 4) and bool((out >= 0).all())  # type: ignore[union-attr]


def test_masked_mean_pool_scripts_and_ignores_padding() -> None:
    pool = MaskedMeanPool(torch.nn.Embedding(12, 4))
    ids = torch.tensor([[3, 0, 0], [0, 0, 0]])
    out = _same(pool, ids)
    torch.testing.assert_close(out[0], pool.table.weight[3].detach())  # type: ignore[index]
    assert torch.equal(out[1], torch.zeros(4))  # type: ignore[index]


def test_interaction_and_over_arch_script() -> None:
    pairs = _same(InteractionArch(5), torch.rand(B * N, 5, 4))
    assert pairs.shape == (B * N, 10)  # type: ignore[union-attr]
    assert _same(OverArch(10, [6]), pairs).shape == (B * N,)  # type: ignore[union-attr]


def _tower_config() -> TwoTowerConfig:
    return TwoTowerConfig(n_users=8, n_items=11, n_categories=3, profile_vocab_sizes=PROFILE_SIZES,
                          text_dim=3, image_dim=0, embedding_dim=6, id_dim=5, context_dim=3, hidden=[7])  # fmt: skip


def test_query_and_item_towers_script() -> None:
    assert _same(QueryTower(_tower_config()), _user()).shape == (B, 6)  # type: ignore[union-attr]
    assert _same(ItemTower(_tower_config()), _items(N)).shape == (N, 6)  # type: ignore[union-attr]


def test_dlrm_ranker_scripts() -> None:
    config = DLRMConfig(n_users=8, n_items=11, n_categories=3, profile_vocab_sizes=PROFILE_SIZES,
                        n_user_dense=4, n_item_dense=2, text_dim=3, image_dim=0, embedding_dim=4)  # fmt: skip
    ranker = DLRMRanker(config)
    out = _same(ranker, RankerBatch(_user(), torch.rand(B, 4) * 9, _items(B, N)))
    assert out.shape == (B, N)  # type: ignore[union-attr]
