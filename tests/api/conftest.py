"""Fixtures of the API tests: an app over fake pipeline services (recommendations and Kafka delivery faked), and
the API key with its stored hash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.api.app import Services, create_app
from serving.settings import ApiSettings, ServingSettings
from streamrec.pipeline_client import RecommendRequest, RecommendResult
from streamrec.schemas.events import InteractionEvent

KEY = "api-test-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY}


class FakePipeline:
    def __init__(self) -> None:
        self.requests: list[RecommendRequest] = []
        self.events: list[InteractionEvent] = []
        self.catalog: list[Any] = []

    async def write_catalog(self, kind: Any, records: Any) -> None:
        self.catalog.extend(records)

    async def recommend(self, request: RecommendRequest) -> RecommendResult:
        self.requests.append(request)
        items = [f"item-{i}" for i in range(request.k)]
        return RecommendResult(items, [1.0 - i / 1000 for i in range(request.k)], "v-test", [], {"ranker": 0.5})

    def services(self) -> Services:
        async def ok() -> None:
            return None

        return Services(self.recommend, self.events.append, {"triton": ok}, write_catalog=self.write_catalog)


def make_app(fake: FakePipeline, **api: Any) -> FastAPI:
    api.setdefault("auth_disabled", True)
    return create_app(ApiSettings(**api), ServingSettings(), fake.services)


@pytest.fixture
def fake() -> FakePipeline:
    return FakePipeline()


@pytest.fixture
def open_api(fake: FakePipeline) -> Iterator[TestClient]:
    with TestClient(make_app(fake)) as client:
        yield client
