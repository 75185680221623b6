"""``GET`` and ``POST /v1/recommendations``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from serving.api.dependencies import ApiContext, get_context, get_services, require_key
from serving.api.errors import ERRORS, ApiError, validation_errors
from serving.api.models import (
    K_BOUND,
    LimitError,
    RecommendationRequest,
    RecommendationResponse,
    RecommendedItemOut,
    apply_limits,
)
from serving.api.services import Services
from streamrec.pipeline_client import RecommendOptions, RecommendRequest, RecommendResult
from streamrec.schemas.events import ID_PATTERN, Device

ENDPOINT = "/v1/recommendations"
QUERY_FIELDS = {
    "user_id", "k", "device", "timestamp", "include_categories", "exclude_categories", "exclude_ids",
    "diversity", "max_per_category", "temperature", "seed", "timings",
}  # fmt: skip

_ID = ID_PATTERN.strip("^$")
# An empty value is an empty list.
_ID_LIST = f"^({_ID}(,{_ID})*)?$"
_CATEGORY_LIST = "^([^,]{1,128}(,[^,]{1,128}){0,99})?$"


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


#: The GET route reads its query itself (to name the failing field its way); these document it.
QUERY_PARAMETERS = [
    _query("user_id", {"type": "string", "pattern": ID_PATTERN}, "Who the recommendations are for."),
    _query("k", {"type": "integer", "minimum": 1, "maximum": K_BOUND}, "How many items."),
    _query("device", {"type": "string", "enum": [d.value for d in Device]}, "Device class of the client."),
    _query(
        "timestamp",
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "minimum": 100_000_000_000, "exclusiveMaximum": 4_102_444_800_000},
            ]
        },
        "Request time: RFC 3339 with an offset, or epoch milliseconds.",
    ),
    _query("include_categories", {"type": "string", "pattern": _CATEGORY_LIST}, "Comma-separated categories."),
    _query("exclude_categories", {"type": "string", "pattern": _CATEGORY_LIST}, "Comma-separated categories."),
    _query("exclude_ids", {"type": "string", "pattern": _ID_LIST}, "Comma-separated item ids."),
    _query("diversity", {"type": "number", "minimum": 0, "maximum": 1}, "MMR diversity weight."),
    _query("max_per_category", {"type": "integer", "minimum": 0, "maximum": 100}, "At most this many per category."),
    _query("temperature", {"type": "number", "minimum": 0, "maximum": 10}, "Softmax sampling temperature."),
    _query("seed", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, "Sampling seed."),
    _query("timings", {"type": "boolean"}, "Include per-stage timings (ms)."),
]

router = APIRouter(tags=["recommendations"], dependencies=[Depends(require_key)], responses=ERRORS)


#: An ASCII integer short enough to convert cheaply (``str.isdigit`` accepts "²", and ``int()`` refuses
#: thousands of digits): anything else is refused here, naming the field, before any conversion.
_ASCII_INT = re.compile(r"-?[0-9]{1,19}")


def _integer(key: str, raw: str) -> int:
    if not _ASCII_INT.fullmatch(raw):
        raise ApiError(422, key, "must be an integer (ASCII digits, at most 19)")
    return int(raw)


def query_to_body(params: Any) -> dict[str, Any]:
    """GET query parameters -> the POST body's shape (lists are comma-separated; types checked by the model)."""
    unknown = sorted(set(params.keys()) - QUERY_FIELDS)
    if unknown:
        raise ApiError(422, unknown[0], "unknown query parameter")
    body: dict[str, Any] = {}
    filters: dict[str, Any] = {}
    for key in params:
        values = params.getlist(key)
        if len(values) > 1:
            raise ApiError(422, key, "given more than once")
        raw = values[0]
        if key in ("include_categories", "exclude_categories", "exclude_ids"):
            filters[key] = [v for v in raw.split(",")] if raw else []
        elif key in ("k", "max_per_category", "seed"):
            body[key] = _integer(key, raw)
        elif key == "timestamp":
            body[key] = _integer(key, raw) if _ASCII_INT.fullmatch(raw) else raw  # else RFC 3339, checked by the model
        elif key in ("diversity", "temperature"):
            try:
                body[key] = float(raw)
            except ValueError:
                raise ApiError(422, key, "must be a number") from None
        elif key == "timings":
            body[key] = {"true": True, "1": True, "false": False, "0": False}.get(raw.lower(), raw)
        else:
            body[key] = raw
    if filters:
        body["filters"] = filters
    return body


def to_pipeline_request(req: RecommendationRequest, k: int) -> RecommendRequest:
    return RecommendRequest(
        user_id=req.user_id,
        k=k,
        device=req.device.value,
        timestamp_ms=int(req.timestamp.timestamp() * 1000) if req.timestamp else None,
        options=RecommendOptions(
            include_categories=tuple(req.filters.include_categories),
            exclude_categories=tuple(req.filters.exclude_categories),
            exclude_items=tuple(req.filters.exclude_ids),
            diversity=req.diversity,
            max_per_category=req.max_per_category,
            temperature=req.temperature,
            seed=req.seed,
        ),
        timings=req.timings,
    )


def to_response(req: RecommendationRequest, result: RecommendResult) -> RecommendationResponse:
    return RecommendationResponse(
        user_id=req.user_id,
        items=[
            RecommendedItemOut(item_id=i, score=s, rank=r + 1)
            for r, (i, s) in enumerate(zip(result.items, result.scores, strict=True))
        ],
        model_version=result.model_version,
        flags=result.flags,
        source=result.source,
        fallback_reason=result.fallback_reason,
        generated_at=datetime.now(UTC),
        timings_ms=result.timings_ms if req.timings else None,
    )


async def recommend(req: RecommendationRequest, context: ApiContext, services: Services) -> RecommendationResponse:
    try:
        k = apply_limits(req, context.limits)
    except LimitError as exc:
        raise ApiError(422, exc.field, exc.reason) from None
    start = time.perf_counter()
    result = await services.recommend(to_pipeline_request(req, k))
    metrics = context.metrics
    for flag in result.flags:
        metrics.flags.labels(flag).inc()
    metrics.latency.labels(ENDPOINT).observe(time.perf_counter() - start)
    metrics.count(ENDPOINT, 200)
    return to_response(req, result)


@router.get(
    ENDPOINT,
    response_model=RecommendationResponse,
    summary="Recommendations (query parameters; lists comma-separated)",
    openapi_extra={"parameters": QUERY_PARAMETERS},
)
async def get_recommendations(
    request: Request, context: ApiContext = Depends(get_context), services: Services = Depends(get_services)
) -> RecommendationResponse:
    try:
        req = RecommendationRequest.model_validate(query_to_body(request.query_params))
    except ValidationError as exc:
        status, errors = validation_errors(list(exc.errors()))
        raise ApiError(status, errors[0]["field"], errors[0]["reason"]) from None
    return await recommend(req, context, services)


@router.post(ENDPOINT, response_model=RecommendationResponse, summary="Recommendations (JSON body)")
async def post_recommendations(
    body: RecommendationRequest,
    context: ApiContext = Depends(get_context),
    services: Services = Depends(get_services),
) -> RecommendationResponse:
    return await recommend(body, context, services)
