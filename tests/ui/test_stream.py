"""``/v1/recommendations/stream`` over real HTTP (uvicorn in a thread) with an in-memory topic: authentication,
ids, fan-out by user, many subscribers on one consumer, disconnects, the consumer closed once nobody listens,
and the Kafka status line. The same stream on a real Kafka broker is in test_stream_kafka.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from serving.api.app import Services, create_app
from serving.api.catalog import Catalog, ItemInfo
from serving.api.live import LiveUpdate, Subscription
from serving.api.settings import UiSettings
from serving.settings import ApiSettings, ServingSettings
from streamrec.pipeline_client import RecommendRequest, RecommendResult
from streamrec.security import hash_api_key
from tests.ui.conftest import FakeTopic, SseReader, message, serve

KEY = "stream-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY}
STREAM = "/v1/recommendations/stream"


async def _recommend(request: RecommendRequest) -> RecommendResult:
    return RecommendResult(["i1"], [0.5], "v-test", [])


def make_app(topic: FakeTopic | None, catalog: Catalog | None = None, **ui: Any) -> FastAPI:
    def services() -> Services:
        return Services(
            _recommend,
            lambda e: None,
            catalog=(lambda: catalog) if catalog is not None else None,
            live_feed=topic.factory if topic is not None else None,
        )

    settings = UiSettings(**{"keepalive_s": 0.2, "idle_close_s": 0.3, **ui})
    return create_app(
        ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))]), ServingSettings(), services, ui_settings=settings
    )


@pytest.fixture
def api(topic: FakeTopic) -> Iterator[tuple[str, FastAPI]]:
    app = make_app(topic)
    with serve(app) as url:
        yield url, app


def hub_of(app: FastAPI) -> Any:
    return app.state.context.hub


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_stream_needs_the_api_key(api: tuple[str, FastAPI], topic: FakeTopic) -> None:
    url, app = api
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = httpx.get(f"{url}{STREAM}", params={"user_id": "u1"}, headers=headers, timeout=5)
        assert response.status_code == 401 and response.json()["field"] == "X-API-Key"
    assert topic.feeds == [] and hub_of(app).subscribers == 0


@pytest.mark.parametrize(("params", "reason"), [({}, "field required"), ({"user_id": "a b"}, "must be 1-128")])
def test_stream_names_a_bad_or_missing_user_id(
    api: tuple[str, FastAPI], topic: FakeTopic, params: dict[str, str], reason: str
) -> None:
    url, _ = api
    response = httpx.get(f"{url}{STREAM}", params=params, headers=AUTH, timeout=5)
    assert response.status_code == 422
    assert response.json()["field"] == "user_id" and response.json()["reason"].startswith(reason)
    assert topic.feeds == []


def test_each_stream_gets_its_users_lists_only_and_an_unknown_user_only_keepalives(
    api: tuple[str, FastAPI], topic: FakeTopic
) -> None:
    url, _ = api
    alice = SseReader(f"{url}{STREAM}?user_id=alice", AUTH).open()
    nobody = SseReader(f"{url}{STREAM}?user_id=never-seen-user", AUTH).open()
    try:
        assert alice.status_code == 200 and nobody.status_code == 200
        assert alice.next("status").data["kafka"] in ("connecting", "ok")
        assert alice.next("status").data["kafka"] == "ok" or topic.feeds[0].assigned()
        topic.publish(message("bob", ["b1"]))
        topic.publish(message("alice", ["a1", "a2"], trigger="5b0e2f9e-1c41-4b52-9f54-0a8a3f3f2d10"))
        got = alice.next("recommendations")
        assert got.data["user_id"] == "alice" and [i["item_id"] for i in got.data["items"]] == ["a1", "a2"]
        assert got.data["trigger_event_id"] == "5b0e2f9e-1c41-4b52-9f54-0a8a3f3f2d10" and got.id == "1"
        assert got.data["received_at_ms"] > 0
        later = nobody.drain(0.6)
        assert [e.event for e in later if e.event == "recommendations"] == []
        assert nobody.comments >= 2  # keep-alive comments every 0.2 s
        assert [e.event for e in alice.drain(0.3) if e.event == "recommendations"] == []  # bob's list never came
    finally:
        alice.close()
        nobody.close()
    assert len(topic.feeds) == 1


def test_many_subscribers_share_one_consumer_and_each_gets_its_list(api: tuple[str, FastAPI], topic: FakeTopic) -> None:
    url, app = api
    readers = [SseReader(f"{url}{STREAM}?user_id=u{n % 10}", AUTH).open() for n in range(40)]
    try:
        wait_until(lambda: hub_of(app).subscribers == 40)
        for n in range(10):
            topic.publish(message(f"u{n}", [f"item-{n}"]))
        for n, reader in enumerate(readers):
            got = reader.next("recommendations")
            assert got.data["user_id"] == f"u{n % 10}" and got.data["items"][0]["item_id"] == f"item-{n % 10}"
        assert len(topic.feeds) == 1 and hub_of(app).delivered == 40
    finally:
        for reader in readers:
            reader.close()


def test_streams_over_the_limit_are_refused(topic: FakeTopic) -> None:
    with serve(make_app(topic, max_subscribers=2)) as url:
        first = SseReader(f"{url}{STREAM}?user_id=u1", AUTH).open()
        second = SseReader(f"{url}{STREAM}?user_id=u2", AUTH).open()
        try:
            first.next("status")
            second.next("status")
            refused = httpx.get(f"{url}{STREAM}", params={"user_id": "u3"}, headers=AUTH, timeout=5)
            assert refused.status_code == 503 and "limit is 2" in refused.json()["reason"]
        finally:
            first.close()
            second.close()


def test_disconnects_release_subscribers_and_the_idle_consumer_closes(
    api: tuple[str, FastAPI], topic: FakeTopic
) -> None:
    url, app = api
    hub = hub_of(app)
    readers = [SseReader(f"{url}{STREAM}?user_id=u{n}", AUTH).open() for n in range(5)]
    for reader in readers:
        reader.next("status")
    wait_until(lambda: hub.subscribers == 5)
    readers[0].close()
    wait_until(lambda: hub.subscribers == 4)
    assert topic.open_feeds == 1  # others still listen
    for reader in readers[1:]:
        reader.close()
    wait_until(lambda: hub.subscribers == 0)
    wait_until(lambda: topic.open_feeds == 0 and hub.feeds_open == 0)  # closed after idle_close_s, not leaked
    assert hub.kafka_status == "idle"
    again = SseReader(f"{url}{STREAM}?user_id=u1", AUTH).open()  # a new page starts a new consumer
    try:
        again.next("status")
        wait_until(lambda: topic.open_feeds == 1)
        topic.publish(message("u1", ["x"]))
        assert again.next("recommendations").data["items"][0]["item_id"] == "x"
    finally:
        again.close()
    assert len(topic.feeds) == 2


def test_api_shutdown_closes_the_consumer(topic: FakeTopic) -> None:
    app = make_app(topic, idle_close_s=60)
    with serve(app) as url:
        reader = SseReader(f"{url}{STREAM}?user_id=u1", AUTH).open()
        reader.next("status")
        wait_until(lambda: topic.open_feeds == 1)
        reader.close()
    assert topic.open_feeds == 0 and hub_of(app).feeds_open == 0


def test_kafka_unavailable_is_reported_on_the_stream() -> None:
    down = FakeTopic(assign_after_s=None, error="Connect to ipv4#127.0.0.1:1 failed: Connection refused")
    with serve(make_app(down, assignment_timeout_s=0.3)) as url:
        reader = SseReader(f"{url}{STREAM}?user_id=u1", AUTH).open()
        try:
            status = reader.next("status").data["kafka"]
            while status == "connecting":
                status = reader.next("status").data["kafka"]
            assert status == "unavailable: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        finally:
            reader.close()


def test_no_live_feed_means_503_naming_the_reason() -> None:
    with serve(make_app(None)) as url:
        response = httpx.get(f"{url}{STREAM}", params={"user_id": "u1"}, headers=AUTH, timeout=5)
        assert response.status_code == 503 and "no live stream" in response.json()["reason"]
        assert httpx.get(f"{url}/ui/config.json", timeout=5).json()["live"] is False


def test_a_slow_reader_loses_its_oldest_lists_not_the_newest() -> None:
    import asyncio

    async def run() -> list[int]:
        sub = Subscription("u1", buffer=3)
        for n in range(10):
            sub.offer(LiveUpdate("recommendations", {"n": n}))
        assert sub.dropped == 7
        return [sub.queue.get_nowait().data["n"] for _ in range(sub.queue.qsize())]

    assert asyncio.run(run()) == [7, 8, 9]


def test_page_and_its_reads(topic: FakeTopic) -> None:
    png = b"\x89PNG\r\n\x1a\n-fake-"
    catalog = Catalog(
        {"i1": ItemInfo("i1", "Red kettle", "kitchen", 19.5, True), "i2": ItemInfo("i2", None, "toys", None, False)},
        {"i1": png},
        ["u1", "u2"],
        "v-test",
        "test catalog",
    )
    with serve(make_app(topic, catalog)) as url:
        redirect = httpx.get(f"{url}/ui", timeout=5)
        assert redirect.status_code == 307 and redirect.headers["location"] == "/ui/"
        page = httpx.get(f"{url}/ui/", timeout=5)
        assert page.status_code == 200 and "<title>streamrec" in page.text
        for asset in ("app.js", "style.css"):
            assert httpx.get(f"{url}/ui/static/{asset}", timeout=5).status_code == 200
        config = httpx.get(f"{url}/ui/config.json", timeout=5).json()  # before a key: no secrets in it
        assert config["auth_required"] is True and config["key_header"] == "X-API-Key" and config["live"] is True
        assert "click" in config["event_types"] and config["default_k"] == 10
        assert httpx.get(f"{url}/v1/users/known", timeout=5).status_code == 401
        known = httpx.get(f"{url}/v1/users/known", headers=AUTH, timeout=5).json()
        assert known["users"] == ["u1", "u2"] and known["model_version"] == "v-test"
        items = httpx.get(f"{url}/v1/items", params={"ids": "i1,i2,missing"}, headers=AUTH, timeout=5).json()
        assert items["items"] == [
            {"item_id": "i1", "title": "Red kettle", "category": "kitchen", "price": 19.5, "has_image": True},
            {"item_id": "i2", "title": None, "category": "toys", "price": None, "has_image": False},
        ]
        image = httpx.get(f"{url}/v1/items/image", params={"item_id": "i1"}, headers=AUTH, timeout=5)
        assert image.status_code == 200 and image.content == png and image.headers["content-type"] == "image/png"
        none = httpx.get(f"{url}/v1/items/image", params={"item_id": "i2"}, headers=AUTH, timeout=5)
        assert none.status_code == 404 and none.json()["field"] == "item_id"
        too_many = httpx.get(f"{url}/v1/items", params={"ids": ",".join(f"i{n}" for n in range(201))}, headers=AUTH)
        assert too_many.status_code == 422 and too_many.json()["field"] == "ids"
