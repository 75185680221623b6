"""Fixtures of the serving tests: a tiny export built with the trainer's own code, a throwaway Feast repository
with the user stream view (names from streamrec.features), and pipeline configurations over them."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from serving.pipeline.config import StageConfig
from serving.settings import ServingSettings
from streamrec import artifacts as art
from streamrec.features import (
    FEAST_USER_ENTITY_KEY,
    FEAST_USER_PUSH_SOURCE,
    FEAST_USER_STREAM_VIEW,
    USER_COUNT_FEATURES,
)
from streamrec.settings import BloomSettings, FeastSettings
from trainer.data import synthetic
from trainer.settings import TrainerSettings
from trainer.train.full import run_full

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once
RECENT_ITEMS = "recent_items"


def trainer_settings(tmp: Path, seed: int = 7) -> TrainerSettings:
    return TrainerSettings(
        device="cpu",
        seed=seed,
        progress=False,
        retrieval_epochs=1,
        ranker_epochs=1,
        batch_size=256,
        embedding_dim=16,
        id_dim=16,
        text_dim=8,
        image_dim=0,
        cache_dir=tmp / "cache",
        checkpoint_dir=tmp / f"checkpoints-{seed}",
        num_threads=1,
    )


def train_version(data_root: Path, export_root: Path, tmp: Path, seed: int) -> str:
    """Train and publish one version with the trainer's own code; returns its name (now CURRENT)."""
    summary = run_full(data_root, export_root, trainer_settings(tmp, seed))
    assert summary.version is not None
    return summary.version


@pytest.fixture(scope="session")
def serving_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="session")
def data_root(serving_tmp: Path) -> Path:
    root = serving_tmp / "data"
    config = synthetic.SyntheticConfig.preset("tiny", seed=11).with_sizes(users=400, items=150, events=6_000, days=5)
    synthetic.prepare(root, config)
    return root


@pytest.fixture(scope="session")
def export_root(data_root: Path, serving_tmp: Path) -> Path:
    root = serving_tmp / "exports"
    train_version(data_root, root, serving_tmp, seed=7)
    return root


@pytest.fixture(scope="session")
def export_dir(export_root: Path) -> Path:
    return art.current_dir(export_root)


def make_config(export_dir: Path, redis_url: str, feast_repo: Path | None, project: str = "none") -> StageConfig:
    return StageConfig(
        export_dir=export_dir,
        export_version=export_dir.name,
        serving=ServingSettings(features_enabled=True),
        bloom=BloomSettings(),
        feast=FeastSettings(repo=feast_repo or Path("/nonexistent-feast-repo"), project=project),
        redis_url=redis_url,
    )


@pytest.fixture(scope="session")
def feast_repo(stack: Any, serving_tmp: Path) -> Iterator[tuple[Path, str]]:
    """A Feast repository with the user stream view, applied on the test stack's Valkey; (path, project)."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.types import Array, Int64, String

    from streamrec.feast_config import write_minimal_repo_config

    project = f"srtest_{uuid.uuid4().hex[:8]}"
    repo = serving_tmp / "feature_repo"
    write_minimal_repo_config(repo, project, stack.redis.effective_url)
    user = Entity(name="user", join_keys=[FEAST_USER_ENTITY_KEY], value_type=ValueType.STRING)
    source = PushSource(
        name=FEAST_USER_PUSH_SOURCE,
        batch_source=FileSource(name="user_offline", path=str(repo / "user.parquet"), timestamp_field="ts"),
    )
    view = FeatureView(
        name=FEAST_USER_STREAM_VIEW,
        entities=[user],
        ttl=timedelta(days=7),
        schema=[
            *(Field(name=n, dtype=Int64) for n in USER_COUNT_FEATURES),
            Field(name=RECENT_ITEMS, dtype=Array(String)),
        ],
        source=source,
        online=True,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, source, view])
    yield repo, project
    with contextlib.suppress(Exception):  # the stack may already be gone
        store.teardown()


def push_user_features(repo: Path, rows: list[dict[str, Any]]) -> None:
    """Write user stream rows ({user_id, recent_items, <counts>...}) to the online store."""
    from feast import FeatureStore

    frame = pd.DataFrame(rows)
    for name in USER_COUNT_FEATURES:
        if name not in frame:
            frame[name] = 0
    frame["ts"] = datetime.now(UTC)
    FeatureStore(repo_path=str(repo)).write_to_online_store(FEAST_USER_STREAM_VIEW, frame)


@pytest.fixture(scope="session")
def fresh_repository(stack: Any) -> Path:
    """Drop what an earlier test session left in the test Triton's repository (its exports are gone) before
    Triton loads it: request this fixture before ``triton``."""
    import shutil

    repo = stack.triton.model_repository
    if repo.is_dir():
        for path in repo.iterdir():
            if path.name.startswith("recommend") or path.name.startswith(".streamrec-serving"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    return repo


@dataclass
class Answer:
    at: float
    source: str
    model_version: str
    n_items: int
    fallback_reason: str | None


@dataclass
class KeepAsking:
    """Clients asking Triton in a loop (threads) while a test switches versions; ``answers`` in arrival order."""

    answers: list[Answer] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [a.fallback_reason for a in self.answers if a.fallback_reason]


@contextlib.contextmanager
def keep_asking(
    triton: Any, export_root: Path, request: Callable[[int, int], Any], clients: int = 2
) -> Iterator[KeepAsking]:
    """``request(client, n)`` builds the n-th request of a client. The clients allow 10 s per request: on a
    2-core box, starting new stage processes while serving can stall a request past the default 1 s, which is
    latency, not a failed switch."""
    from streamrec.pipeline_client import PipelineClient

    state = KeepAsking()
    stop = threading.Event()
    patient = triton.model_copy(update={"request_timeout_s": 10.0})

    def ask(client_no: int) -> None:
        client = PipelineClient(patient, export_root=export_root)
        n = 0
        while not stop.is_set():
            r = client.recommend(request(client_no, n))
            state.answers.append(Answer(time.monotonic(), r.source, r.model_version, len(r.items), r.fallback_reason))
            n += 1
        client.close()

    threads = [threading.Thread(target=ask, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield state
    finally:
        stop.set()
        for thread in threads:
            thread.join()
