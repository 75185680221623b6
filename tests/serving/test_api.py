"""The HTTP API: validation (each rejection names the field), authentication, events, health, metrics, and the
Triton-down fallback through the real gRPC client."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from serving.api.app import Services, create_app
from serving.settings import ApiSettings, ServingSettings
from streamrec.pipeline_client import (
    POPULARITY_FALLBACK,
    AsyncPipelineClient,
    RecommendRequest,
    RecommendResult,
)
from streamrec.schemas.events import InteractionEvent
from streamrec.security import hash_api_key
from streamrec.settings import TritonSettings
from tests.conftest import StackHandle

KEY = "test-key-123-0123456789abcdef"
AUTH = {"X-API-Key": KEY}


class FakePipeline:
    def __init__(self) -> None:
        self.requests: list[RecommendRequest] = []
        self.events: list[InteractionEvent] = []

    async def recommend(self, request: RecommendRequest) -> RecommendResult:
        self.requests.append(request)
        items = [f"item-{i}" for i in range(request.k)]
        return RecommendResult(items, [1.0 - i / 100 for i in range(request.k)], "v-test", [], {"ranker": 0.5})

    def services(self) -> Services:
        async def ok() -> None:
            return None

        async def down() -> None:
            raise ConnectionError("refused")

        return Services(self.recommend, self.events.append, {"triton": ok, "redis": ok, "feast": down})


@pytest.fixture
def fake() -> FakePipeline:
    return FakePipeline()


@pytest.fixture
def client(fake: FakePipeline) -> Iterator[TestClient]:
    app = create_app(ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))]), ServingSettings(), fake.services)
    with TestClient(app) as test_client:
        yield test_client


def event(**overrides: Any) -> dict[str, Any]:
    body = {
        "event_id": str(uuid.uuid4()),
        "user_id": "u1",
        "item_id": "i1",
        "event_type": "click",
        "timestamp": "2026-11-28T10:00:00Z",
        "context": {"device": "mobile", "session_id": "s1"},
    }
    body.update(overrides)
    return body


def test_get_and_post_recommendations(client: TestClient, fake: FakePipeline) -> None:
    got = client.get(
        "/v1/recommendations",
        params={"user_id": "u1", "k": "3", "device": "tablet", "include_categories": "books,toys", "timings": "true"},
        headers=AUTH,
    )
    assert got.status_code == 200, got.text
    body = got.json()
    assert [i["rank"] for i in body["items"]] == [1, 2, 3] and body["model_version"] == "v-test"
    assert body["timings_ms"] == {"ranker": 0.5}
    sent = fake.requests[-1]
    assert sent.user_id == "u1" and sent.k == 3 and sent.device == "tablet"
    assert sent.options.include_categories == ("books", "toys")
    posted = client.post(
        "/v1/recommendations",
        json={"k": 2, "timestamp": 1764000000000, "filters": {"exclude_ids": ["a", "b"]}, "diversity": 0.3},
        headers=AUTH,
    )
    assert posted.status_code == 200, posted.text
    assert posted.json()["user_id"] is None and posted.json()["timings_ms"] is None
    sent = fake.requests[-1]
    assert sent.user_id is None and sent.timestamp_ms == 1764000000000
    assert sent.options.exclude_items == ("a", "b") and sent.options.diversity == 0.3


BAD_GETS = [
    ({"k": "0"}, "k"),
    ({"k": "101"}, "k"),
    ({"k": "ten"}, "k"),
    ({"k": "-3"}, "k"),
    ({"user_id": "has space"}, "user_id"),
    ({"user_id": "{braces}"}, "user_id"),
    ({"device": "phone"}, "device"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": "1700000000"}, "timestamp"),  # seconds, not ms
    ({"diversity": "2"}, "diversity"),
    ({"diversity": "lots"}, "diversity"),
    ({"temperature": "-1"}, "temperature"),
    ({"timings": "maybe"}, "timings"),
    ({"kk": "5"}, "kk"),
    ({"exclude_ids": "ok,bad id"}, "filters.exclude_ids.1"),
    ({"include_categories": "a,,b"}, "filters.include_categories.1"),
    ({"seed": "-1"}, "seed"),
    # str.isdigit() accepts these, int() does not: each was a 500.
    ({"k": "\u00b2"}, "k"),
    ({"k": "--5"}, "k"),
    ({"k": "9" * 5000}, "k"),
    ({"seed": "\u00b2"}, "seed"),
    ({"max_per_category": "1" * 30}, "max_per_category"),
    ({"timestamp": "\u00b3"}, "timestamp"),
    ({"timestamp": "1" * 5000}, "timestamp"),
]


@pytest.mark.parametrize(("params", "field"), BAD_GETS)
def test_bad_get_requests_name_the_field(
    client: TestClient, fake: FakePipeline, params: dict[str, str], field: str
) -> None:
    response = client.get("/v1/recommendations", params=params, headers=AUTH)
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["field"] == field, body
    assert body["reason"]
    assert fake.requests == []


BAD_POSTS: list[tuple[Any, str, int]] = [
    ({"k": "10"}, "k", 422),  # strings are not integers in JSON
    ({"k": True}, "k", 422),
    ({"k": 1000}, "k", 422),
    ({"user_id": ""}, "user_id", 422),
    ({"user_id": 42}, "user_id", 422),
    ({"device": "fridge"}, "device", 422),
    ({"timestamp": "2026-11-28T10:00:00"}, "timestamp", 422),  # no offset
    ({"filters": {"exclude_ids": "abc"}}, "filters.exclude_ids", 422),
    ({"filters": {"exclude_ids": ["x"] * 501}}, "filters.exclude_ids", 422),
    ({"filters": {"colour": ["red"]}}, "filters.colour", 422),
    ({"unexpected": 1}, "unexpected", 422),
    ({"max_per_category": 1.5}, "max_per_category", 422),
    ({"k": 1e300}, "k", 422),
    ({"timings": "yes"}, "timings", 422),
    ("[not json", "<body>", 400),
    ("[" * 5000, "<body>", 400),  # FastAPI's own parse error, in the ErrorResponse shape
    ('{"k": ' + "9" * 5000 + "}", "<body>", 400),
]


@pytest.mark.parametrize(("body", "field", "status"), BAD_POSTS)
def test_bad_post_requests_name_the_field(
    client: TestClient, fake: FakePipeline, body: Any, field: str, status: int
) -> None:
    if isinstance(body, str):
        response = client.post(
            "/v1/recommendations", content=body, headers={**AUTH, "Content-Type": "application/json"}
        )
    else:
        response = client.post("/v1/recommendations", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field, response.json()
    assert fake.requests == []


def test_limits_come_from_the_settings(fake: FakePipeline) -> None:
    serving = ServingSettings(default_k=4, max_k=20)
    app = create_app(ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))], max_exclude_ids=2), serving, fake.services)
    with TestClient(app) as api:
        assert len(api.get("/v1/recommendations", headers=AUTH).json()["items"]) == 4
        assert fake.requests[-1].k == 4
        assert api.post("/v1/recommendations", json={"k": 20}, headers=AUTH).status_code == 200
        over = api.post("/v1/recommendations", json={"k": 21}, headers=AUTH)
        assert over.status_code == 422 and over.json()["field"] == "k" and "20" in over.json()["reason"]
        ids = api.get("/v1/recommendations", params={"exclude_ids": "a,b,c"}, headers=AUTH)
        assert ids.status_code == 422 and ids.json()["field"] == "filters.exclude_ids"
        assert api.get("/v1/recommendations", params={"exclude_ids": "a,b"}, headers=AUTH).status_code == 200
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (event(event_type="like"), "event_type"),
        (event(event_id="123"), "event_id"),
        (event(user_id="a b"), "user_id"),
        (event(timestamp=1700000000), "timestamp"),
        (event(context={"device": "mobile"}), "context.session_id"),
        ({k: v for k, v in event().items() if k != "item_id"}, "item_id"),
        ([event(), event(item_id="")], "[1].item_id"),
        ([], "<payload>"),
    ],
)
def test_bad_events_name_the_field(client: TestClient, fake: FakePipeline, body: Any, field: str) -> None:
    response = client.post("/v1/events", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert fake.events == []


def test_events_are_accepted_and_produced(client: TestClient, fake: FakePipeline) -> None:
    one = event()
    response = client.post("/v1/events", json=one, headers=AUTH)
    assert response.status_code == 202 and response.json() == {"accepted": 1, "event_ids": [one["event_id"]]}
    many = [event(item_id=f"i{i}") for i in range(3)]
    assert client.post("/v1/events", json=many, headers=AUTH).json()["accepted"] == 3
    assert [e.item_id for e in fake.events] == ["i1", "i0", "i1", "i2"]
    garbage = client.post("/v1/events", content=b"\xff\xfe", headers={**AUTH, "Content-Type": "application/json"})
    assert garbage.status_code == 400 and garbage.json()["field"] == "<payload>"


@pytest.mark.parametrize(
    "raw",
    ["[" * 5000, '{"event_id": ' + "7" * 5000 + "}", '{"a": "\\ud800"}' + "\u00ff"],
    ids=["nested", "digits", "bad"],
)
def test_events_body_that_json_cannot_parse_is_a_400(client: TestClient, fake: FakePipeline, raw: str) -> None:
    response = client.post("/v1/events", content=raw.encode(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "<payload>" and response.json()["reason"].startswith("not valid JSON")
    assert fake.events == []


def test_unknown_paths_and_methods_answer_in_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found" and missing.json()["field"]
    wrong = client.delete("/v1/recommendations", headers=AUTH)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert "detail" not in wrong.json()


def chunked(payload: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def test_chunked_body_over_the_limit_is_refused_before_processing(fake: FakePipeline) -> None:
    app = create_app(
        ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))], max_body_bytes=65_536), ServingSettings(), fake.services
    )
    big = b'{"filters": {"exclude_ids": [' + b",".join(b'"x"' for _ in range(75_000)) + b"]}}"  # ~300 KB
    with TestClient(app) as api:
        response = api.post(
            "/v1/recommendations", content=chunked(big), headers={**AUTH, "Content-Type": "application/json"}
        )
        assert response.status_code == 413, response.text
        assert response.json()["field"] == "<body>" and "65536" in response.json()["reason"]
        events = api.post("/v1/events", content=chunked(big), headers={**AUTH, "Content-Type": "application/json"})
        assert events.status_code == 413
        small = json.dumps({"k": 2}).encode()
        ok = api.post(
            "/v1/recommendations", content=chunked(small, 3), headers={**AUTH, "Content-Type": "application/json"}
        )
        assert ok.status_code == 200, ok.text
        text = api.get("/metrics").text
    assert fake.requests and fake.requests[-1].k == 2 and len(fake.requests) == 1
    assert 'streamrec_api_requests_total{endpoint="/v1/recommendations",status="413"} 1.0' in text


def test_metric_labels_never_carry_the_raw_path(fake: FakePipeline) -> None:
    app = create_app(
        ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))], max_body_bytes=1024), ServingSettings(), fake.services
    )
    with TestClient(app) as api:
        for i in range(3):
            api.post(f"/v1/random-{i}", content=b"x" * 2000, headers=AUTH)
            api.get(f"/v1/other-{i}", headers=AUTH)
        text = api.get("/metrics").text
    assert "random-" not in text and "other-" not in text
    assert 'endpoint="<unmatched>",status="413"} 3.0' in text


def test_body_size_limit(fake: FakePipeline) -> None:
    app = create_app(
        ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))], max_body_bytes=1024), ServingSettings(), fake.services
    )
    with TestClient(app) as small:
        response = small.post("/v1/events", json=[event() for _ in range(20)], headers=AUTH)
    assert response.status_code == 413 and response.json()["field"] == "<body>"


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-Api-Key": ""}])
def test_auth_is_required(client: TestClient, fake: FakePipeline, headers: dict[str, str]) -> None:
    for method, path, kwargs in (
        ("GET", "/v1/recommendations", {}),
        ("POST", "/v1/recommendations", {"json": {}}),
        ("POST", "/v1/events", {"json": event()}),
    ):
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["field"] == "X-API-Key"
    assert fake.requests == [] and fake.events == []


def test_auth_off_only_when_disabled_explicitly(fake: FakePipeline) -> None:
    app = create_app(ApiSettings(auth_disabled=True), ServingSettings(), fake.services)
    with TestClient(app) as open_client:
        assert open_client.get("/v1/recommendations").status_code == 200
    app = create_app(ApiSettings(), ServingSettings(), fake.services)  # no keys, not disabled: nothing gets in
    with TestClient(app) as closed:
        assert closed.get("/v1/recommendations", headers={"X-API-Key": ""}).status_code == 401


def test_health_readiness_metrics_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["triton"] == "ok" and ready.json()["checks"]["feast"].startswith("unavailable")
    client.get("/v1/recommendations", headers=AUTH)
    client.get("/v1/recommendations", params={"k": "0"}, headers=AUTH)
    text = client.get("/metrics").text
    assert 'streamrec_api_requests_total{endpoint="/v1/recommendations",status="200"} 1.0' in text
    assert 'streamrec_api_requests_total{endpoint="/v1/recommendations",status="422"} 1.0' in text
    spec = client.get("/openapi.json").json()
    assert {"/v1/recommendations", "/v1/events", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])


def test_triton_down_gives_flagged_popular_items(export_root: Path, export_dir: Path) -> None:
    """The real gRPC client against a port where nothing listens: a 200 with popular items and a flag."""
    import numpy as np

    from streamrec import artifacts as art

    triton = TritonSettings(grpc_url="127.0.0.1:1", request_timeout_s=0.5)

    def services() -> Services:
        pipeline = AsyncPipelineClient(triton, export_root=export_root)
        return Services(pipeline.recommend, lambda e: None, {}, pipeline.close)

    app = create_app(ApiSettings(auth_disabled=True), ServingSettings(), services)
    arrays = art.load_item_arrays(export_dir)
    maps = art.load_id_maps(export_dir)
    popular = [maps.item_ids[i] for i in np.argsort(-arrays.popularity, kind="stable")]
    with TestClient(app) as api:
        for _ in range(5):
            response = api.get("/v1/recommendations", params={"user_id": "u1", "k": "5", "exclude_ids": popular[0]})
            assert response.status_code == 200
            body = response.json()
            assert body["flags"] == [POPULARITY_FALLBACK] and body["source"] == "fallback"
            assert [i["item_id"] for i in body["items"]] == popular[1:6]
            assert body["model_version"] == export_dir.name


def test_page_catalog_without_an_items_file_comes_from_the_export(export_root: Path, export_dir: Path) -> None:
    from serving.api.catalog import Catalog
    from streamrec import artifacts as art

    catalog = Catalog.load(None, export_root, known_users=3)
    maps = art.load_id_maps(export_dir)
    assert catalog.known_users == maps.user_ids[:3] and catalog.model_version == export_dir.name
    assert set(catalog.items) == set(maps.item_ids) and catalog.source == "model export"
    categories = {info.category for info in catalog.items.values()}
    assert categories <= set(maps.categories) and len(categories - {None}) > 1
    assert all(info.title is None and not info.has_image for info in catalog.items.values())


def test_the_api_fallback_never_returns_an_item_the_live_catalog_holds_unavailable(
    stack: StackHandle, export_root: Path, export_dir: Path, monkeypatch: pytest.MonkeyPatch, unique_id: str
) -> None:
    """The API's own clients (default services), Triton unreachable: the popular items come from the export,
    less the item the live catalog marked unavailable."""
    import numpy as np
    import redis

    from streamrec import artifacts as art
    from streamrec.catalog.live import LiveCatalogWriter, LiveItem, LiveKeys

    prefix = f"apitest-{unique_id}"
    monkeypatch.setenv("STREAMREC_TRITON_GRPC_URL", "127.0.0.1:1")
    monkeypatch.setenv("STREAMREC_TRITON_REQUEST_TIMEOUT_S", "0.5")
    monkeypatch.setenv("STREAMREC_PATHS_EXPORT_ROOT", str(export_root))
    monkeypatch.setenv("STREAMREC_CATALOG_LIVE_PREFIX", prefix)
    arrays, maps = art.load_item_arrays(export_dir), art.load_id_maps(export_dir)
    order = np.argsort(-arrays.popularity, kind="stable")
    popular = [maps.item_ids[i] for i in order]
    client = redis.Redis.from_url(stack.redis.effective_url)
    keys = LiveKeys.for_version(export_dir.name, prefix=prefix)
    LiveCatalogWriter(client, keys, len(maps.item_ids)).publish(
        [LiveItem(popular[0], int(order[0]) + 1, available=False, updated_ms=1)]
    )
    try:
        with TestClient(create_app(ApiSettings(auth_disabled=True), ServingSettings())) as api:
            body = api.get("/v1/recommendations", params={"user_id": "u1", "k": "5"}).json()
        assert body["source"] == "fallback", body
        assert [i["item_id"] for i in body["items"]] == popular[1:6]
    finally:
        client.delete(keys.state, keys.changes, keys.index, keys.next_index)
        client.close()
