"""Fixtures of the catalog sync tests: a tiny export trained with the trainer's own code, and a throwaway Feast
repository holding the project's own definitions (feature_repo/definitions.py), applied on the test Valkey."""

from __future__ import annotations

import contextlib
import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PROFILE_FIELDS = ("profile_segment", "profile_country")


@pytest.fixture(scope="session")
def catalog_export_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.serving.conftest import trainer_settings
    from trainer.data import synthetic
    from trainer.train.full import run_full

    tmp = tmp_path_factory.mktemp("catalog-sync")
    data = tmp / "data"
    config = synthetic.SyntheticConfig.preset("tiny", seed=11).with_sizes(users=200, items=80, events=2_000, days=4)
    synthetic.prepare(data, config)
    settings = trainer_settings(tmp, seed=7)
    summary = run_full(data, tmp / "exports", settings)
    assert summary.version is not None
    return tmp / "exports"


@pytest.fixture(scope="session")
def catalog_feast_store(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A ``feast.FeatureStore`` with the repository's views (item_content, user_profile, ...) applied."""
    from feast import FeatureStore

    from streamrec.feast_config import write_minimal_repo_config

    repo = tmp_path_factory.mktemp("catalog-feast")
    write_minimal_repo_config(repo, f"srcat_{uuid.uuid4().hex[:8]}", stack.redis.effective_url)
    spec = importlib.util.spec_from_file_location(
        "catalog_test_feature_definitions", REPO / "feature_repo" / "definitions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = FeatureStore(repo_path=str(repo))
    store.apply(module.build_objects(repo / "archive", repo / "offline", list(PROFILE_FIELDS)))
    yield store
    with contextlib.suppress(Exception):  # the stack may already be gone
        store.teardown()
