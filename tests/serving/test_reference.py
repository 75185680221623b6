"""The reference pipeline on a real (tiny) export without any store: degradations are flagged, never raised."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from serving.pipeline.config import StageConfig
from serving.pipeline.reference import ReferencePipeline
from serving.settings import ServingSettings
from streamrec.pipeline_client import (
    BLOOM_UNAVAILABLE,
    FEATURES_UNAVAILABLE,
    UNKNOWN_USER,
    RecommendOptions,
    RecommendRequest,
)
from tests.serving.conftest import DEAD_REDIS, make_config


@pytest.fixture(scope="module")
def offline(export_dir: Path) -> ReferencePipeline:
    """Redis unreachable (Bloom and Feast both down)."""
    return ReferencePipeline(make_config(export_dir, DEAD_REDIS, None))


@pytest.fixture(scope="module")
def storeless(export_dir: Path) -> ReferencePipeline:
    """Stores switched off on purpose: what a pass-through must equal."""
    config = make_config(export_dir, DEAD_REDIS, None)
    serving = config.serving.model_copy(update={"bloom_enabled": False, "features_enabled": False})
    return ReferencePipeline(StageConfig(**{**config.model_dump(), "serving": serving}))


def test_redis_down_passes_through_flagged(offline: ReferencePipeline, storeless: ReferencePipeline) -> None:
    users = offline.export.id_maps.user_ids
    for i in range(5):
        request = RecommendRequest(user_id=users[i], k=10, device="mobile", timestamp_ms=1_764_000_000_000)
        start = time.perf_counter()
        result = offline.recommend(request)
        elapsed = time.perf_counter() - start
        assert len(result.items) == 10
        assert set(result.flags) == {BLOOM_UNAVAILABLE, FEATURES_UNAVAILABLE}
        assert result.items == storeless.recommend(request).items
        if i > 0:  # the store is marked down after the first failure: no connection attempt per request
            assert elapsed < 0.2


def test_anonymous_gets_results_unflagged_and_unknown_user_is_flagged(offline: ReferencePipeline) -> None:
    anonymous = offline.recommend(RecommendRequest(user_id=None, k=25))
    assert len(anonymous.items) == len(set(anonymous.items)) == 25
    assert anonymous.flags == []  # no store is consulted for an anonymous user
    assert anonymous.scores == sorted(anonymous.scores, reverse=True)
    unknown = offline.recommend(RecommendRequest(user_id="never-seen-user", k=5))
    assert UNKNOWN_USER in unknown.flags and len(unknown.items) == 5


def test_k_larger_than_candidates_returns_what_qualifies(offline: ReferencePipeline) -> None:
    export = offline.export
    category = export.id_maps.categories[int(np.bincount(export.items.category_idx).argmax())]
    n_in_category = int((export.items.category_idx == export.id_maps.categories.index(category)).sum())
    result = offline.recommend(
        RecommendRequest(user_id=None, k=100, options=RecommendOptions(include_categories=(category,)))
    )
    assert 0 < len(result.items) <= n_in_category


def test_reference_is_deterministic_and_sampling_is_seeded(offline: ReferencePipeline) -> None:
    request = RecommendRequest(user_id=None, k=10, timestamp_ms=1_764_000_000_000)
    assert offline.recommend(request).items == offline.recommend(request).items
    a = RecommendRequest(user_id=None, k=10, options=RecommendOptions(temperature=1.0, seed=1))
    b = RecommendRequest(user_id=None, k=10, options=RecommendOptions(temperature=1.0, seed=2))
    assert offline.recommend(a).items == offline.recommend(a).items
    assert offline.recommend(a).items != offline.recommend(b).items


def test_prepare_writes_a_new_slot_when_only_stage_settings_change(export_root: Path, tmp_path: Path) -> None:
    """A stage reads its stage.json once, at load: pointing it at another Redis must make a new slot."""
    from serving.repository import RepositoryState, prepare

    repo = tmp_path / "repo"
    first = prepare(repo, export_root, redis_url="redis://127.0.0.1:1/0", serving=ServingSettings())
    again = prepare(repo, export_root, redis_url="redis://127.0.0.1:1/0", serving=ServingSettings())
    moved = prepare(repo, export_root, redis_url="redis://127.0.0.1:2/0", serving=ServingSettings())
    assert RepositoryState.read(repo).slot == 2
    assert (first.slot, again.slot, moved.slot) == (1, 1, 2)


def test_prepare_replaces_a_slot_whose_stage_settings_this_version_cannot_read(
    export_root: Path, tmp_path: Path
) -> None:
    """A repository written by another version (a setting since removed) gets a new slot, not an error."""
    import json

    from serving.pipeline.config import STAGE_CONFIG_FILE
    from serving.repository import prepare

    repo = tmp_path / "repo"
    first = prepare(repo, export_root, redis_url="redis://127.0.0.1:1/0", serving=ServingSettings())
    stage_json = next(repo.rglob(STAGE_CONFIG_FILE))
    old = json.loads(stage_json.read_text())
    old["serving"]["a_setting_since_removed"] = "x"
    stage_json.write_text(json.dumps(old))
    again = prepare(repo, export_root, redis_url="redis://127.0.0.1:1/0", serving=ServingSettings())
    assert (first.slot, again.slot) == (1, 2)
