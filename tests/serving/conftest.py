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


def wait_until(condition: Callable[[], bool], timeout_s: float = 15.0, every_s: float = 0.05) -> float:
    """Seconds until ``condition()`` held; fails the test if it never did within ``timeout_s``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(every_s)
    return time.monotonic() - start


def check_live_catalog(client: Any, reference: Any, redis_url: str, unique_id: str) -> dict[str, float]:
    """Publish live-catalog entries for the served export as the catalog sync would and follow them in the
    answers of ``client`` (Triton) and of ``reference`` (same export, same Redis, its own follower):

    * an added item whose vector matches a user's query far better than any other, with the content of that
      user's top item, appears in the answer (its category's items, all of them asked for) and is retrieved
      first; answers equal the reference's;
    * an export item that was in the answer, made unavailable, is gone; the added item made unavailable too;
    * both made available again / left masked, so later tests see the export as it was.

    Returns the seconds each change took to show in Triton's answers."""
    import numpy as np
    import redis

    from serving.pipeline.contract import CANDIDATES, QUERY
    from streamrec.catalog.live import LiveCatalogWriter, LiveItem, LiveKeys, LiveVectors
    from streamrec.pipeline_client import RecommendOptions, RecommendRequest, request_arrays

    export = reference.export
    items = export.items
    request = RecommendRequest(
        user_id=export.id_maps.user_ids[5], k=10, device="mobile", timestamp_ms=1_764_000_000_000
    )
    before = client.recommend(request)
    assert before.source == "triton", before.fallback_reason
    top_id = before.items[0]
    top = export.item_index[top_id]
    query = reference.run(request_arrays([request]))[QUERY.name][0]
    big = float(np.linalg.norm(items.embeddings, axis=1).max()) * 10
    vec = LiveVectors(query * big, items.dense[top - 1], items.text[top - 1], items.image[top - 1])
    category = int(items.category_idx[top - 1])
    in_category = RecommendRequest(
        request.user_id,
        100,
        request.device,
        request.timestamp_ms,
        RecommendOptions(include_categories=(export.id_maps.categories[category],)),
    )
    new_id = f"live-{unique_id}"
    keys = LiveKeys.for_version(export.version)
    redis_client = redis.Redis.from_url(redis_url)
    writer = LiveCatalogWriter(redis_client, keys, export.metadata.n_items)
    delays: dict[str, float] = {}
    try:
        new_index = writer.index_for(new_id)
        assert new_index > export.metadata.n_items
        writer.publish([LiveItem(new_id, new_index, True, 1, category, vec)])
        delays["added"] = wait_until(lambda: new_id in client.recommend(in_category).items)
        wait_until(lambda: new_id in reference.recommend(in_category).items)
        retrieved = reference.stage("retrieval").run({QUERY.name: query[None, :]})[CANDIDATES.name][0]
        assert retrieved[0] == new_index
        for r in (request, in_category):
            assert client.recommend(r).items == reference.recommend(r).items, r

        writer.publish([LiveItem(top_id, top, False, 2), LiveItem(new_id, new_index, False, 2)])
        delays["unavailable"] = wait_until(
            lambda: top_id not in client.recommend(request).items and new_id not in client.recommend(in_category).items
        )
        wait_until(lambda: top_id not in reference.recommend(request).items)
        after = client.recommend(request)
        assert after.source == "triton" and len(after.items) == 10 and after.items == reference.recommend(request).items
        assert not {top_id, new_id} & set(client.recommend(in_category).items)
    finally:
        writer.publish([LiveItem(top_id, top, True, 3)])  # the added item stays masked: never returned again
        wait_until(lambda: client.recommend(request).items == before.items)
        wait_until(lambda: reference.recommend(request).items == before.items)
        redis_client.close()
    return delays
