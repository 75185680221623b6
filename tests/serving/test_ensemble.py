"""The Triton ensemble against the pure-Python reference on the same export, stores and requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.pipeline.reference import ReferencePipeline
from serving.repository import ModelControl, RepositoryState, prepare, remove
from serving.settings import ServingSettings
from streamrec import artifacts as art
from streamrec.bloom.store import SeenItemStore
from streamrec.pipeline_client import (
    BLOOM_UNAVAILABLE,
    FEATURES_UNAVAILABLE,
    POPULARITY_FALLBACK,
    SAMPLED,
    UNKNOWN_USER,
    PipelineClient,
    RecommendOptions,
    RecommendRequest,
)
from streamrec.security import hash_api_key
from streamrec.settings import BloomSettings, FeastSettings, TritonSettings
from tests.serving.conftest import check_live_catalog, keep_asking, make_config, push_user_features, train_version

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z


@pytest.fixture(scope="module")
def served(
    stack: Any, fresh_repository: Path, triton: TritonSettings, export_root: Path, feast_repo: tuple[Path, str]
) -> Iterator[dict[str, Any]]:
    """Prepare the test Triton's repository for the tiny export; the reference built from the same config.
    Afterwards the models are unloaded and removed (their export lives in a temporary folder)."""
    repo, project = feast_repo
    serving = ServingSettings(layout="ensemble", reload_grace_s=0.2)
    control = ModelControl(triton.http_url)
    result = prepare(
        triton.model_repository,
        export_root,
        ensemble=triton.ensemble_model,
        serving=serving,
        bloom=BloomSettings(),
        feast=FeastSettings(repo=repo, project=project),
        redis_url=stack.redis.effective_url,
        control=control,
    )
    control.close()
    assert result.loaded
    export_dir = art.current_dir(export_root)
    reference = ReferencePipeline(make_config(export_dir, stack.redis.effective_url, repo, project))
    client = PipelineClient(triton, export_root=export_root)
    seen = SeenItemStore.connect(stack.redis, BloomSettings())
    yield {"reference": reference, "client": client, "seen": seen, "export_dir": export_dir}
    client.close()
    reference.close()
    control = ModelControl(triton.http_url)
    remove(triton.model_repository, triton.ensemble_model, control)
    control.close()


def test_ensemble_equals_reference(served: dict[str, Any], feast_repo: tuple[Path, str], unique_id: str) -> None:
    reference: ReferencePipeline = served["reference"]
    client: PipelineClient = served["client"]
    users = reference.export.id_maps.user_ids
    items = reference.export.id_maps.item_ids
    # Stream features for some users (the rest have none in Feast): recent items change the query.
    push_user_features(
        feast_repo[0],
        [
            {"user_id": users[i], "recent_items": items[i : i + 5], "view_count_24h": i, "click_count_7d": 2}
            for i in range(0, 12, 2)
        ],
    )
    categories = reference.export.id_maps.categories
    requests = [
        RecommendRequest(user_id=users[i], k=10, device="mobile", timestamp_ms=T0 + i * 3_600_000) for i in range(12)
    ]
    requests += [
        RecommendRequest(user_id=None, k=5, device="desktop", timestamp_ms=T0),
        RecommendRequest(user_id=f"new-{unique_id}", k=8, device="tablet", timestamp_ms=T0),
        RecommendRequest(users[1], 10, "mobile", T0, RecommendOptions(include_categories=tuple(categories[1:4]))),
        RecommendRequest(users[2], 10, "mobile", T0, RecommendOptions(exclude_categories=tuple(categories[1:6]))),
        RecommendRequest(users[3], 10, "mobile", T0, RecommendOptions(exclude_items=tuple(items[:50]))),
        RecommendRequest(users[4], 10, "mobile", T0, RecommendOptions(diversity=0.6, max_per_category=2)),
        RecommendRequest(users[5], 10, "mobile", T0, RecommendOptions(temperature=0.5, seed=3)),
        RecommendRequest(users[6], 100, "unknown", T0),
    ]
    for request in requests:
        expected = reference.recommend(request)
        got = client.recommend(request)
        assert got.source == "triton", got.fallback_reason
        assert got.items == expected.items, request
        assert got.scores == pytest.approx(expected.scores, rel=1e-4, abs=1e-6)
        assert got.flags == expected.flags
        assert got.model_version == expected.model_version == reference.version
    assert UNKNOWN_USER in client.recommend(requests[13]).flags
    assert SAMPLED in client.recommend(requests[-2]).flags
    assert not {FEATURES_UNAVAILABLE, BLOOM_UNAVAILABLE, POPULARITY_FALLBACK} & set(client.recommend(requests[0]).flags)


def test_anonymous_user_gets_results_with_timings(served: dict[str, Any]) -> None:
    result = served["client"].recommend(RecommendRequest(user_id=None, k=10, timings=True))
    assert len(result.items) == 10 and len(set(result.items)) == 10
    assert result.flags == []
    assert set(result.timings_ms) >= {"context", "user_features", "query_tower", "retrieval", "ranker", "rerank"}
    assert all(v >= 0 for v in result.timings_ms.values())


def test_seen_and_disliked_items_never_appear(served: dict[str, Any], unique_id: str) -> None:
    client: PipelineClient = served["client"]
    reference: ReferencePipeline = served["reference"]
    user = f"seen-{unique_id}"
    first = client.recommend(RecommendRequest(user_id=user, k=20, timestamp_ms=T0))
    assert len(first.items) == 20
    # The Bloom filter holds every item the user interacted with, dislikes included (streams worker's job).
    seen = first.items[:7] + first.items[15:]
    served["seen"].add({user: seen})
    for k in (10, 20, 100):
        request = RecommendRequest(user_id=user, k=k, timestamp_ms=T0)
        after = client.recommend(request)
        assert not set(seen) & set(after.items)
        assert after.items == reference.recommend(request).items
    # The unseen ones keep their relative order.
    kept = [i for i in first.items if i not in seen]
    again = client.recommend(RecommendRequest(user_id=user, k=20, timestamp_ms=T0)).items
    assert again[: len(kept)] == kept


def test_filters_and_exclusions_hold(served: dict[str, Any]) -> None:
    client: PipelineClient = served["client"]
    export = served["reference"].export
    categories = export.id_maps.categories
    category_of = {
        item: categories[c] for item, c in zip(export.id_maps.item_ids, export.items.category_idx, strict=True)
    }
    include = tuple(categories[1:3])
    result = client.recommend(
        RecommendRequest(user_id=None, k=30, options=RecommendOptions(include_categories=include))
    )
    assert result.items and all(category_of[i] in include for i in result.items)
    exclude = tuple(categories[1:10])
    result = client.recommend(
        RecommendRequest(user_id=None, k=30, options=RecommendOptions(exclude_categories=exclude))
    )
    assert result.items and not any(category_of[i] in exclude for i in result.items)
    top = client.recommend(RecommendRequest(user_id=None, k=10)).items
    result = client.recommend(RecommendRequest(user_id=None, k=10, options=RecommendOptions(exclude_items=tuple(top))))
    assert len(result.items) == 10 and not set(top) & set(result.items)
    none = client.recommend(
        RecommendRequest(user_id=None, k=10, options=RecommendOptions(include_categories=("no-such",)))
    )
    assert none.items == [] and none.source == "triton"


def test_every_stage_follows_the_live_catalog_in_place(served: dict[str, Any], stack: Any, unique_id: str) -> None:
    """Each stage's process follows the live catalog itself: an added item reaches retrieval, the Bloom check,
    the filters, the item features and the answer; an unavailable one leaves it, without a reload."""
    delays = check_live_catalog(served["client"], served["reference"], stack.redis.effective_url, unique_id)
    assert set(delays) == {"added", "unavailable"}


def test_hot_reload_under_load_fails_no_request(
    served: dict[str, Any],
    stack: Any,
    triton: TritonSettings,
    export_root: Path,
    data_root: Path,
    serving_tmp: Path,
    feast_repo: tuple[Path, str],
) -> None:
    """Publish a new export and switch Triton to it while two threads keep asking: every answer comes from
    Triton (no error, no fallback) and the model version flips from the old to the new one. The clients allow
    10 s per request: on a 2-core box, starting nine new stage processes while serving can stall a request past
    the default 1 s, which is latency, not a failed switch."""
    old = served["reference"].version
    users = served["reference"].export.id_maps.user_ids

    def request(client: int, n: int) -> RecommendRequest:
        return RecommendRequest(user_id=users[(n * 7 + client) % len(users)], k=10)

    with keep_asking(triton, export_root, request) as asked:
        new = train_version(data_root, export_root, serving_tmp, seed=8)
        control = ModelControl(triton.http_url)
        repo, project = feast_repo
        switched = prepare(
            triton.model_repository,
            export_root,
            ensemble=triton.ensemble_model,
            serving=ServingSettings(layout="ensemble", reload_grace_s=0.5),
            bloom=BloomSettings(),
            feast=FeastSettings(repo=repo, project=project),
            redis_url=stack.redis.effective_url,
            control=control,
        )
        control.close()
        done_at = time.monotonic()
        time.sleep(2.0)
    assert switched.changed and switched.export_version == new != old
    assert len(asked.answers) > 50
    assert {a.source for a in asked.answers} == {"triton"}, asked.reasons[:3]
    assert all(a.n_items == 10 for a in asked.answers)
    versions = [a.model_version for a in asked.answers]
    assert set(versions) == {old, new}
    assert versions[0] == old
    assert {a.model_version for a in asked.answers if a.at > done_at} == {new}
    # Only the new slot stays loaded.
    assert RepositoryState.read(triton.model_repository.resolve()).export_version == new


def test_api_end_to_end(
    served: dict[str, Any],
    feast_repo: tuple[Path, str],
    export_root: Path,
    unique_topics: Any,
    stack: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API with its real clients: readiness of Triton, Redis and Feast; recommendations equal the ensemble's;
    events land in Kafka."""
    import json as jsonlib
    import uuid

    from confluent_kafka import Consumer
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from serving.api.app import create_app
    from serving.settings import ApiSettings
    from streamrec.client.consumer import consumer_config
    from streamrec.settings import KafkaSettings

    topic = unique_topics("api-events")
    monkeypatch.setenv("STREAMREC_KAFKA_INTERACTIONS_TOPIC", topic)
    monkeypatch.setenv("STREAMREC_PATHS_EXPORT_ROOT", str(export_root))
    repo, project = feast_repo
    api = ApiSettings(api_keys=[SecretStr(hash_api_key("k1", "pbkdf2_sha256"))])
    app = create_app(api, ServingSettings(), feast=FeastSettings(repo=repo, project=project))
    user = served["reference"].export.id_maps.user_ids[3]
    event_ids = [str(uuid.uuid4()) for _ in range(3)]
    with TestClient(app) as api:
        ready = api.get("/readyz")
        assert ready.status_code == 200, ready.json()
        got = api.get(
            "/v1/recommendations",
            params={"user_id": user, "k": "7", "device": "mobile", "timestamp": str(T0), "timings": "true"},
            headers={"X-API-Key": "k1"},
        ).json()
        expected = served["client"].recommend(RecommendRequest(user_id=user, k=7, device="mobile", timestamp_ms=T0))
        assert got["source"] == "triton" and [i["item_id"] for i in got["items"]] == expected.items
        assert got["model_version"] == expected.model_version and got["timings_ms"]["ranker"] >= 0
        events = [
            {
                "event_id": eid,
                "user_id": user,
                "item_id": expected.items[0],
                "event_type": "click",
                "timestamp": T0,
                "context": {"device": "mobile", "session_id": "s"},
            }
            for eid in event_ids
        ]
        accepted = api.post("/v1/events", json=events, headers={"X-API-Key": "k1"})
        assert accepted.status_code == 202 and accepted.json()["event_ids"] == event_ids
    consumer = Consumer(
        consumer_config(KafkaSettings.load(), f"t-{uuid.uuid4().hex[:8]}", **{"auto.offset.reset": "earliest"})
    )
    consumer.subscribe([topic])
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while len(seen) < 3 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            assert message.key() == user.encode()
            seen.append(jsonlib.loads(message.value())["event_id"])
    consumer.close()
    assert sorted(seen) == sorted(event_ids)
