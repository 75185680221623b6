"""Model shapes, feature masking, loss sanity and readable errors on bad indices."""

from __future__ import annotations

import pytest
import torch

from trainer.models.dlrm import DLRMConfig, DLRMRanker
from trainer.models.two_tower import TwoTower, TwoTowerConfig, in_batch_softmax_loss, mask_query_inputs
from trainer.settings import TrainerSettings
from trainer.train.loops import make_optimizer

B, P, R, N = 5, 3, 20, 7


def _two_tower() -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(TwoTowerConfig(n_users=10, n_items=30, n_categories=4, profile_vocab_sizes=[3, 4, 5],
                                   text_dim=6, image_dim=2, embedding_dim=8, id_dim=8))  # fmt: skip


def _query_inputs() -> tuple[torch.Tensor, ...]:
    return (
        torch.randint(0, 11, (B,)),
        torch.stack([torch.randint(0, n, (B,)) for n in (3, 4, 5)], dim=1),
        torch.randint(0, 31, (B, R)),
        torch.stack([torch.randint(0, 4, (B,)), torch.randint(0, 24, (B,)), torch.randint(0, 7, (B,))], dim=1),
    )


def test_query_tower_shape_and_norm() -> None:
    out = _two_tower().query_tower(*_query_inputs())
    assert out.shape == (B, 8)
    assert torch.allclose(out.norm(dim=1), torch.ones(B), atol=1e-5)


def test_anonymous_user_gets_a_query_from_context_alone() -> None:
    tower = _two_tower().query_tower
    ctx = torch.tensor([[1, 20, 4], [2, 8, 0]])
    out = tower(
        torch.zeros(2, dtype=torch.long), torch.zeros(2, P, dtype=torch.long), torch.zeros(2, R, dtype=torch.long), ctx
    )
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the context still moves the query


def test_item_tower_embeds_new_items_from_content() -> None:
    tower = _two_tower().item_tower
    text = torch.randn(2, 6)
    out = tower(torch.zeros(2, dtype=torch.long), torch.tensor([1, 1]), text, torch.zeros(2, 2))
    assert out.shape == (2, 8)
    assert not torch.allclose(out[0], out[1])


def test_masking_zeroes_whole_inputs_at_the_given_rate() -> None:
    user = torch.arange(1, 2001)
    profile = torch.ones(2000, P, dtype=torch.long)
    recent = torch.ones(2000, R, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    u, p, r = mask_query_inputs(user, profile, recent, 0.3, 0.0, 1.0, gen)
    assert 0.25 < float((u == 0).float().mean()) < 0.35
    assert torch.equal(p, profile)
    assert int(r.sum()) == 0
    assert int((user == 0).sum()) == 0  # inputs untouched


def test_in_batch_loss_prefers_aligned_pairs_and_ignores_accidental_hits() -> None:
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    ids = torch.arange(1, 17)
    zeros = torch.zeros(16)
    aligned = in_batch_softmax_loss(q, q, ids, zeros, 0.1)
    shuffled = in_batch_softmax_loss(q, q[torch.randperm(16)], ids, zeros, 0.1)
    assert float(aligned) < float(shuffled)
    dup = ids.clone()
    dup[1] = dup[0]  # row 1 holds the same item as row 0: it must not count as a negative of row 0
    items = q.clone()
    items[1] = q[0]
    masked = in_batch_softmax_loss(q, items, dup, zeros, 0.1)
    assert torch.isfinite(masked)
    # logQ correction: items that are sampled often get pushed down
    log_q = torch.zeros(16)
    log_q[0] = 5.0
    corrected = in_batch_softmax_loss(q, q, ids, log_q, 0.1)
    assert float(corrected) != pytest.approx(float(aligned))


def _ranker() -> DLRMRanker:
    torch.manual_seed(0)
    return DLRMRanker(DLRMConfig(n_users=10, n_items=30, n_categories=4, profile_vocab_sizes=[3, 4, 5],
                                 n_user_dense=15, n_item_dense=2, text_dim=6, image_dim=0))  # fmt: skip


def _ranker_inputs(n: int = N) -> tuple[torch.Tensor, ...]:
    user, profile, recent, ctx = _query_inputs()
    return (user, profile, recent, ctx, torch.rand(B, 15) * 10, torch.randint(0, 31, (B, n)),
            torch.randint(0, 5, (B, n)), torch.rand(B, n, 2), torch.rand(B, n, 6), torch.rand(B, n, 0))  # fmt: skip


def test_ranker_shape_and_per_candidate_independence() -> None:
    ranker = _ranker().eval()
    inputs = _ranker_inputs()
    out = ranker(*inputs)
    assert out.shape == (B, N)
    # scoring a subset of candidates gives the same logits for them
    sub = list(inputs)
    for k in range(5, 10):
        sub[k] = inputs[k][:, :3]
    assert torch.allclose(ranker(*sub), out[:, :3], atol=1e-5)


def test_ranker_bce_decreases_when_training_on_a_fixed_batch() -> None:
    ranker = _ranker()
    inputs = _ranker_inputs()
    target = (torch.rand(B, N) > 0.5).float()
    opt = make_optimizer(ranker, TrainerSettings(learning_rate=1e-2))
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ranker(*inputs), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.5


@pytest.mark.parametrize("position, bad", [(0, 11), (2, 31), (3, 4)])
def test_out_of_range_indices_raise_a_readable_error(position: int, bad: int) -> None:
    inputs = list(_query_inputs())
    if position == 3:
        inputs[3] = inputs[3].clone()
        inputs[3][0, 0] = bad
    else:
        inputs[position] = inputs[position].clone()
        inputs[position].view(-1)[0] = bad
    with pytest.raises(ValueError, match="out of range"):
        _two_tower().query_tower(*inputs)
