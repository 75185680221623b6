"""Model shapes, feature masking, loss sanity, named inputs and what an out-of-range index gives."""

from __future__ import annotations

import warnings

import pytest
import torch

from streamrec.features import QUERY_TOWER_INPUTS, RANKER_INPUTS
from trainer.models.dlrm import DLRMConfig, DLRMRanker, ExportedRanker
from trainer.models.inputs import (
    ItemFeatures,
    RankerBatch,
    UserFeatures,
    item_features_from_dict,
    ranker_batch_from_dict,
    user_features_from_dict,
)
from trainer.models.layers import check_index_ranges
from trainer.models.two_tower import (
    ExportedQueryTower,
    TwoTower,
    TwoTowerConfig,
    in_batch_softmax_loss,
    mask_user_features,
)
from trainer.settings import TrainerSettings
from trainer.train.loops import make_optimizer

B, P, R, N = 5, 3, 20, 7


def _script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(module)


def _two_tower() -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(TwoTowerConfig(n_users=10, n_items=30, n_categories=4, profile_vocab_sizes=[3, 4, 5],
                                   text_dim=6, image_dim=2, embedding_dim=8, id_dim=8))  # fmt: skip


def _user_features() -> UserFeatures:
    return UserFeatures(
        user_idx=torch.randint(0, 11, (B,)),
        profile_idx=torch.stack([torch.randint(0, n, (B,)) for n in (3, 4, 5)], dim=1),
        recent_items=torch.randint(0, 31, (B, R)),
        context_idx=torch.stack([torch.randint(0, 4, (B,)), torch.randint(0, 24, (B,)), torch.randint(0, 7, (B,))], 1),
    )


def test_query_tower_shape_and_norm() -> None:
    out = _two_tower().query_tower(_user_features())
    assert out.shape == (B, 8)
    assert torch.allclose(out.norm(dim=1), torch.ones(B), atol=1e-5)


def test_anonymous_user_gets_a_query_from_context_alone() -> None:
    tower = _two_tower().query_tower
    zeros = torch.zeros(2, dtype=torch.long)
    features = UserFeatures(zeros, torch.zeros(2, P, dtype=torch.long), torch.zeros(2, R, dtype=torch.long),
                            torch.tensor([[1, 20, 4], [2, 8, 0]]))  # fmt: skip
    out = tower(features)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the context still moves the query


def test_item_tower_embeds_new_items_from_content() -> None:
    tower = _two_tower().item_tower
    items = ItemFeatures(torch.zeros(2, dtype=torch.long), torch.tensor([1, 1]), torch.zeros(2, 0),
                         torch.randn(2, 6), torch.zeros(2, 2))  # fmt: skip
    out = tower(items)
    assert out.shape == (2, 8)
    assert not torch.allclose(out[0], out[1])


def test_masking_zeroes_whole_inputs_at_the_given_rate() -> None:
    user = torch.arange(1, 2001)
    features = UserFeatures(user, torch.ones(2000, P, dtype=torch.long), torch.ones(2000, R, dtype=torch.long),
                            torch.ones(2000, 3, dtype=torch.long))  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    masked = mask_user_features(features, 0.3, 0.0, 1.0, gen)
    assert 0.25 < float((masked.user_idx == 0).float().mean()) < 0.35
    assert torch.equal(masked.profile_idx, features.profile_idx)
    assert int(masked.recent_items.sum()) == 0
    assert torch.equal(masked.context_idx, features.context_idx)
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


def _candidates(n: int = N) -> ItemFeatures:
    return ItemFeatures(torch.randint(0, 31, (B, n)), torch.randint(0, 5, (B, n)), torch.rand(B, n, 2),
                        torch.rand(B, n, 6), torch.rand(B, n, 0))  # fmt: skip


def _ranker_batch(n: int = N) -> RankerBatch:
    return RankerBatch(_user_features(), torch.rand(B, 15) * 10, _candidates(n))


def test_ranker_shape_and_per_candidate_independence() -> None:
    ranker = _ranker().eval()
    batch = _ranker_batch()
    out = ranker(batch)
    assert out.shape == (B, N)
    # scoring a subset of candidates gives the same logits for them
    subset = batch._replace(candidates=ItemFeatures(*(t[:, :3] for t in batch.candidates)))
    assert torch.allclose(ranker(subset), out[:, :3], atol=1e-5)


def test_ranker_bce_decreases_when_training_on_a_fixed_batch() -> None:
    ranker = _ranker()
    batch = _ranker_batch()
    target = (torch.rand(B, N) > 0.5).float()
    opt = make_optimizer(ranker, TrainerSettings(learning_rate=1e-2))
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ranker(batch), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] * 0.5


def test_feature_containers_round_trip_through_the_core_names() -> None:
    batch = _ranker_batch()
    inputs = batch.to_dict()
    assert tuple(inputs) == RANKER_INPUTS
    assert tuple(batch.user.to_dict()) == QUERY_TOWER_INPUTS
    for convert in (user_features_from_dict, item_features_from_dict, ranker_batch_from_dict):
        assert _script_fn(convert)(inputs) == convert(inputs)  # the scripted literals equal the constants
    back = RankerBatch.from_dict(inputs)
    assert back.user == batch.user and back.candidates == batch.candidates
    assert torch.equal(back.user_dense, batch.user_dense)


def _script_fn(fn: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(fn)


def test_exported_modules_take_one_dict_keyed_by_the_core_names() -> None:
    two_tower, ranker = _two_tower().eval(), _ranker().eval()
    batch = _ranker_batch()
    query = _script(ExportedQueryTower(two_tower.query_tower))
    scripted_ranker = _script(ExportedRanker(ranker))
    with torch.no_grad():
        torch.testing.assert_close(query(batch.user.to_dict()), two_tower.query_tower(batch.user))
        torch.testing.assert_close(scripted_ranker(batch.to_dict()), ranker(batch))
    missing = batch.to_dict()
    del missing["item_cat"]
    with pytest.raises(RuntimeError, match="KeyError: item_cat"):
        scripted_ranker(missing)


def _with(features: UserFeatures, field: str, column: int | None, value: int) -> UserFeatures:
    tensor = getattr(features, field).clone()
    if column is None:
        tensor.view(-1)[0] = value
    else:
        tensor[0, column] = value
    return features._replace(**{field: tensor})


@pytest.mark.parametrize(
    "field, column, bad",
    [("user_idx", None, 11), ("user_idx", None, -3), ("recent_items", None, 31), ("profile_idx", 2, 5),
     ("profile_idx", 0, -1), ("context_idx", 0, 4), ("context_idx", 1, 24), ("context_idx", 2, -2)],
)  # fmt: skip
def test_out_of_range_indices_read_as_unknown_in_both_models(field: str, column: int | None, bad: int) -> None:
    features = _user_features()
    as_unknown = _with(features, field, column, 0)
    out_of_range = _with(features, field, column, bad)
    tower = _script(ExportedQueryTower(_two_tower().query_tower.eval()))
    ranker = _script(ExportedRanker(_ranker().eval()))
    batch = _ranker_batch()
    with torch.no_grad():
        torch.testing.assert_close(tower(out_of_range.to_dict()), tower(as_unknown.to_dict()))
        torch.testing.assert_close(
            ranker(batch._replace(user=out_of_range).to_dict()), ranker(batch._replace(user=as_unknown).to_dict())
        )


@pytest.mark.parametrize("field, bad", [("item_idx", 31), ("item_cat", -1), ("item_cat", 5)])
def test_out_of_range_candidates_read_as_unknown(field: str, bad: int) -> None:
    ranker = _ranker().eval()
    batch = _ranker_batch()
    bad_ids = getattr(batch.candidates, field).clone()
    bad_ids[1, 2] = bad
    unknown_ids = bad_ids.clone()
    unknown_ids[1, 2] = 0
    with torch.no_grad():
        out_of_range = ranker(batch._replace(candidates=batch.candidates._replace(**{field: bad_ids})))
        as_unknown = ranker(batch._replace(candidates=batch.candidates._replace(**{field: unknown_ids})))
    torch.testing.assert_close(out_of_range, as_unknown)


def test_index_range_check_names_every_bad_column() -> None:
    check_index_ranges([("user_idx", torch.tensor([0, 10]), 11), ("empty", torch.zeros(0, dtype=torch.long), 1)])
    with pytest.raises(ValueError) as info:
        check_index_ranges(
            [("user_idx", torch.tensor([0, 12]), 11), ("item_cat", torch.tensor([-1, 2]), 5),
             ("ok", torch.tensor([1]), 2)]
        )  # fmt: skip
    assert str(info.value) == (
        "user_idx out of range: values in [0, 12], valid are 0..10; item_cat out of range: values in [-1, 2], "
        "valid are 0..4"
    )
