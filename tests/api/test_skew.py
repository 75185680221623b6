"""How far ahead of the API's clock an event may be stamped is the core Kafka setting the worker and the
archiver read too (STREAMREC_KAFKA_MAX_FUTURE_SKEW_S)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import FakePipeline, make_app


def test_the_core_skew_setting_bounds_how_far_ahead_an_event_may_be(
    fake: FakePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead = (datetime.now(UTC) + timedelta(seconds=120)).isoformat()
    body = {**skew_event(), "timestamp": ahead}
    with TestClient(make_app(fake)) as api:  # default: 300 s ahead is allowed
        assert api.post("/v1/events", json=body).status_code == 202
    monkeypatch.setenv("STREAMREC_KAFKA_MAX_FUTURE_SKEW_S", "60")
    with TestClient(make_app(fake)) as api:
        response = api.post("/v1/events", json={**body, "event_id": str(uuid.uuid4())})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "timestamp" and "more than 60 s in the future" in response.json()["reason"]


def skew_event() -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "user_id": "u-skew",
        "item_id": "i1",
        "event_type": "click",
        "timestamp": datetime.now(UTC).isoformat(),
        "context": {"device": "mobile", "session_id": "s1"},
    }
