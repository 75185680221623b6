"""API keys are stored hashed (plaintext entries refused at start) and each key has its own rate limit (429
with Retry-After)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from serving.api.app import create_app
from serving.api.ratelimit import RateLimiter, retry_after_header
from serving.api.settings import ApiGuardSettings
from serving.settings import ApiSettings, ServingSettings
from streamrec.errors import ConfigError
from streamrec.security import hash_api_key
from tests.api.conftest import KEY, FakePipeline

OTHER = "another-test-key-abcdefghijklmnop"


def keyed(fake: FakePipeline, *stored: str, guard: ApiGuardSettings | None = None) -> TestClient:
    api = ApiSettings(api_keys=[SecretStr(s) for s in stored])
    return TestClient(create_app(api, ServingSettings(), fake.services, guard=guard))


@pytest.mark.parametrize("scheme", ["sha256", "pbkdf2_sha256"])
def test_stored_hashes_let_their_key_in(fake: FakePipeline, scheme: str) -> None:
    with keyed(fake, hash_api_key(KEY, scheme)) as api:
        assert api.get("/v1/recommendations", headers={"X-API-Key": KEY}).status_code == 200
        assert api.get("/v1/recommendations", headers={"X-API-Key": KEY}).status_code == 200  # cached verification
        wrong = api.get("/v1/recommendations", headers={"X-API-Key": KEY + "x"})
        assert wrong.status_code == 401 and wrong.json()["reason"] == "invalid API key"
        # the stored hash itself is not a key
        assert api.get("/v1/recommendations", headers={"X-API-Key": hash_api_key(KEY)}).status_code == 401


def test_a_plaintext_stored_key_is_refused_at_start(fake: FakePipeline) -> None:
    with pytest.raises(ConfigError, match="entry 1 is not a stored hash"):
        create_app(
            ApiSettings(api_keys=[SecretStr(hash_api_key(KEY)), SecretStr(KEY)]), ServingSettings(), fake.services
        )


def test_each_key_has_its_own_rate_limit(fake: FakePipeline) -> None:
    guard = ApiGuardSettings(rate_per_s=0.5, burst=3)
    with keyed(fake, hash_api_key(KEY), hash_api_key(OTHER), guard=guard) as api:
        answers = [api.get("/v1/recommendations", headers={"X-API-Key": KEY}) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        limited = answers[-1]
        assert limited.json()["error"] == "rate_limited" and limited.json()["field"] == "X-API-Key"
        assert int(limited.headers["Retry-After"]) >= 1
        assert api.get("/v1/recommendations", headers={"X-API-Key": OTHER}).status_code == 200
        assert api.post("/v1/events", json=[], headers={"X-API-Key": KEY}).status_code == 429
        # bad keys are refused as 401, and never spend a valid key's tokens
        assert api.get("/v1/recommendations", headers={"X-API-Key": "nope"}).status_code == 401
    assert len(fake.requests) == 4


def test_rate_limit_can_be_switched_off(fake: FakePipeline) -> None:
    guard = ApiGuardSettings(rate_per_s=0.1, burst=1, rate_limit_disabled=True)
    with keyed(fake, hash_api_key(KEY), guard=guard) as api:
        assert {api.get("/v1/recommendations", headers={"X-API-Key": KEY}).status_code for _ in range(5)} == {200}


def test_token_bucket_refills_at_the_rate() -> None:
    now = [100.0]
    bucket = RateLimiter(rate_per_s=2.0, burst=2, max_keys=2, clock=lambda: now[0])
    assert [bucket.take("a"), bucket.take("a")] == [0.0, 0.0]
    assert bucket.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take("a") == 0.0
    assert bucket.take("a") == pytest.approx(0.5)
    bucket.take("b")
    bucket.take("c")  # "a" is dropped (least recently used) and starts full again
    assert bucket.take("a") == 0.0
    assert retry_after_header(0.01) == "1" and retry_after_header(2.2) == "3"
