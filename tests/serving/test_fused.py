"""The fused layout: the same stages in one Triton model under the ensemble's name, equal to the reference,
hot-reloaded without failed requests, and switched to and from the ensemble layout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.pipeline.reference import ReferencePipeline
from serving.pipeline.stages import STAGES, stage_model_name
from serving.repository import ModelControl, RepositoryState, prepare, remove
from serving.settings import ServingSettings
from streamrec import artifacts as art
from streamrec.pipeline_client import PipelineClient, RecommendOptions, RecommendRequest
from streamrec.settings import BloomSettings, FeastSettings, TritonSettings
from tests.serving.conftest import check_live_catalog, keep_asking, make_config, train_version

T0 = 1_764_000_000_000


@pytest.fixture(scope="module")
def switch(
    stack: Any, fresh_repository: Path, triton: TritonSettings, export_root: Path, feast_repo: tuple[Path, str]
) -> Iterator[Any]:
    """``switch(layout)`` prepares the test Triton's repository in that layout; models removed afterwards."""
    repo, project = feast_repo

    def run(layout: str, grace_s: float = 0.2) -> Any:
        control = ModelControl(triton.http_url)
        try:
            return prepare(
                triton.model_repository,
                export_root,
                ensemble=triton.ensemble_model,
                serving=ServingSettings(layout=layout, reload_grace_s=grace_s),
                bloom=BloomSettings(),
                feast=FeastSettings(repo=repo, project=project),
                redis_url=stack.redis.effective_url,
                control=control,
            )
        finally:
            control.close()

    yield run
    control = ModelControl(triton.http_url)
    remove(triton.model_repository, triton.ensemble_model, control)
    control.close()


def loaded_models(triton: TritonSettings) -> set[str]:
    control = ModelControl(triton.http_url)
    try:
        return {m["name"] for m in control.index() if m.get("state") == "READY"}
    finally:
        control.close()


def test_fused_layout_equals_reference_and_replaces_the_ensemble(
    switch: Any, stack: Any, triton: TritonSettings, export_root: Path, feast_repo: tuple[Path, str]
) -> None:
    assert switch("ensemble").loaded
    assert {stage_model_name(s) for s in STAGES} <= loaded_models(triton)

    result = switch("fused")
    assert result.loaded and result.changed
    repo = triton.model_repository.resolve()
    assert RepositoryState.read(repo).layout == "fused"
    assert not any((repo / stage_model_name(s)).exists() for s in STAGES)
    assert loaded_models(triton) & ({stage_model_name(s) for s in STAGES} | {triton.ensemble_model}) == {
        triton.ensemble_model
    }
    reference = ReferencePipeline(make_config(art.current_dir(export_root), stack.redis.effective_url, *feast_repo))
    users = reference.export.id_maps.user_ids
    categories = reference.export.id_maps.categories
    requests = [RecommendRequest(user_id=users[i], k=10, device="mobile", timestamp_ms=T0 + i) for i in range(6)]
    requests += [
        RecommendRequest(user_id=None, k=5, device="desktop", timestamp_ms=T0),
        RecommendRequest(users[1], 10, "mobile", T0, RecommendOptions(include_categories=tuple(categories[1:4]))),
        RecommendRequest(users[4], 10, "mobile", T0, RecommendOptions(diversity=0.6, max_per_category=2)),
    ]
    client = PipelineClient(triton, export_root=export_root)
    try:
        got_batch = [client.recommend(r) for r in requests]
        timed = client.recommend(RecommendRequest(user_id=users[0], k=10, timings=True))
    finally:
        client.close()
    for request, got in zip(requests, got_batch, strict=True):
        expected = reference.recommend(request)
        assert got.source == "triton", got.fallback_reason
        assert got.items == expected.items, request
        assert got.scores == pytest.approx(expected.scores, rel=1e-4, abs=1e-6)
        assert got.flags == expected.flags and got.model_version == reference.version
    assert set(timed.timings_ms) == set(STAGES)
    reference.close()

    # A second prepare with nothing new changes nothing.
    again = switch("fused")
    assert not again.changed and again.slot == result.slot


def test_fused_layout_follows_the_live_catalog_in_place(
    switch: Any, stack: Any, triton: TritonSettings, export_root: Path, feast_repo: tuple[Path, str], unique_id: str
) -> None:
    """An item published into the live catalog shows in the fused model's answers within seconds, an item made
    unavailable leaves them: no reload, the same slot serving throughout."""
    serving = switch("fused")
    reference = ReferencePipeline(make_config(art.current_dir(export_root), stack.redis.effective_url, *feast_repo))
    client = PipelineClient(triton, export_root=export_root)
    try:
        delays = check_live_catalog(client, reference, stack.redis.effective_url, unique_id)
    finally:
        client.close()
        reference.close()
    assert switch("fused").slot == serving.slot
    assert set(delays) == {"added", "unavailable"}


def test_fused_hot_reload_under_load_fails_no_request(
    switch: Any, triton: TritonSettings, export_root: Path, data_root: Path, serving_tmp: Path
) -> None:
    before = switch("fused")
    old = before.export_version
    with keep_asking(triton, export_root, lambda client, n: RecommendRequest(user_id=None, k=10)) as asked:
        new = train_version(data_root, export_root, serving_tmp, seed=9)
        switched = switch("fused", grace_s=0.5)
        done_at = time.monotonic()
        time.sleep(2.0)
    assert switched.changed and switched.export_version == new != old
    assert {a.source for a in asked.answers} == {"triton"}, asked.reasons[:3]
    versions = [a.model_version for a in asked.answers]
    assert versions[0] == old and set(versions) == {old, new}
    assert {a.model_version for a in asked.answers if a.at > done_at} == {new}
    assert [p.name for p in (triton.model_repository.resolve() / triton.ensemble_model).iterdir() if p.is_dir()] == [
        str(switched.slot)
    ]

    back = switch("ensemble")
    assert back.loaded and RepositoryState.read(triton.model_repository.resolve()).layout == "ensemble"
    client = PipelineClient(triton, export_root=export_root)
    try:
        assert client.recommend(RecommendRequest(user_id=None, k=10)).source == "triton"
    finally:
        client.close()
