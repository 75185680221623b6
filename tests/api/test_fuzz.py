"""Property-based fuzzing of the live API (uvicorn on a free port) from its own OpenAPI document with
schemathesis: every check (no 5xx, status codes, content types, headers and bodies conforming to the documented
schemas, invalid data rejected), over generated valid and invalid requests.

``STREAMREC_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 25: a few hundred requests in all;
a bench run sets thousands)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (dev extra)")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from serving.api.app import create_app  # noqa: E402
from serving.api.settings import ApiGuardSettings  # noqa: E402
from serving.settings import ApiSettings, ServingSettings  # noqa: E402
from streamrec.security import hash_api_key  # noqa: E402
from tests.api.conftest import KEY, FakePipeline  # noqa: E402
from tests.ui.conftest import serve  # noqa: E402

EXAMPLES = int(os.environ.get("STREAMREC_FUZZ_EXAMPLES", "25"))  # per operation and mode (valid, invalid)
#: The live stream never ends by itself; it has its own tests (tests/ui).
SKIPPED = r"^/v1/recommendations/stream$"

_fake = FakePipeline()


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    app = create_app(
        ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))]),
        ServingSettings(),
        _fake.services,
        guard=ApiGuardSettings(rate_limit_disabled=True),
    )
    with serve(app) as url:
        yield url


def test_api_conforms_to_its_openapi_document(live_url: str) -> None:
    from hypothesis import given

    # A body over the size limit is rejected with 413 before anything else is looked at: a rejection like 400.
    rejections = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"ApiKey": {"api_key": KEY}}},  # the key is given, never mutated
            "checks": {"negative_data_rejection": {"expected-statuses": rejections}},
        }
    )
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json", config=config).exclude(path_regex=SKIPPED)
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # Bounds JSON Schema cannot state, so valid-looking data may be refused: an event's timestamp may not lie more
    # than the clock-skew allowance ahead of now (relative to the request's time), and a catalog body's id must
    # equal the id in the path (across parameters). Every other check applies to these operations too.
    relaxed = {
        label: [positive_data_acceptance]
        for label in ("POST /v1/events", "PUT /v1/items/{item_id}", "PUT /v1/users/{user_id}")
    }
    calls: dict[str, int] = {}
    server_errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for operation, mode in ((op, mode) for op in operations for mode in modes):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            response = case.call()
            label = case.operation.label
            calls[label] = calls.get(label, 0) + 1
            if response.status_code >= 500:
                server_errors.append(f"{label}: {response.status_code} {response.text[:200]}")
            case.validate_response(response, excluded_checks=relaxed.get(label))

        try:
            fuzz()
        except Unsatisfiable:
            if mode is not schemathesis.GenerationMode.NEGATIVE:
                raise  # an operation without parameters or body has no invalid request to make
    assert not server_errors
    print(f"fuzz: {sum(calls.values())} requests over {len(calls)} operations, 0 x 5xx")
