"""The OpenAPI document: every reference resolves, media types match what the routes send, and the API-key
scheme is declared on every operation that needs a key."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolvable {ref}"
        node = node[part]
    return node


def test_every_reference_resolves(open_api: TestClient) -> None:
    spec = open_api.get("/openapi.json").json()
    found = refs(spec)
    assert "#/components/schemas/InteractionEvent" in found and "#/components/schemas/Device" in found
    for ref in found:
        resolve(spec, ref)
    assert not [r for r in found if "$defs" in r]


def test_metrics_is_documented_as_text(open_api: TestClient) -> None:
    spec = open_api.get("/openapi.json").json()
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert open_api.get("/metrics").headers["content-type"].startswith("text/plain")


def test_keyed_operations_declare_the_api_key_scheme(open_api: TestClient) -> None:
    spec = open_api.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key."}
    for path, method in (("/v1/recommendations", "get"), ("/v1/recommendations", "post"), ("/v1/events", "post")):
        assert spec["paths"][path][method]["security"] == [{"ApiKey": []}], path
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in spec["paths"][path]["get"], path


def test_parse_errors_are_documented_in_the_error_shape(open_api: TestClient) -> None:
    spec = open_api.get("/openapi.json").json()
    post = spec["paths"]["/v1/recommendations"]["post"]["responses"]
    assert post["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    answer = open_api.post("/v1/recommendations", content=b"[" * 5000, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and set(answer.json()) == {"error", "field", "reason", "errors"}
