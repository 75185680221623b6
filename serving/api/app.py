"""FastAPI application: ``/v1/recommendations`` (GET, POST), ``/v1/events``, ``/healthz``, ``/readyz``, ``/metrics``.

Recommendations go through :class:`streamrec.pipeline_client.AsyncPipelineClient` (one gRPC channel, timeouts,
popular-items fallback when Triton cannot answer: a degraded answer with a flag, never a 5xx). Every rejected
request is a 4xx whose body names the field and the reason.
"""

from __future__ import annotations

import gc
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.api.models import (
    ErrorResponse,
    EventsAccepted,
    Readiness,
    RecommendationRequest,
    RecommendationResponse,
    RecommendedItemOut,
)
from serving.settings import ApiSettings, ServingSettings
from streamrec.errors import InvalidEventError
from streamrec.pipeline_client import RecommendOptions, RecommendRequest, RecommendResult
from streamrec.schemas.codec import PAYLOAD, first_error, validate_interaction
from streamrec.schemas.events import InteractionEvent

MAX_EVENTS_PER_CALL = 500
QUERY_FIELDS = {
    "user_id", "k", "device", "timestamp", "include_categories", "exclude_categories", "exclude_ids",
    "diversity", "max_per_category", "temperature", "seed", "timings",
}  # fmt: skip
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed request (body is not JSON, ...)."},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
    413: {"model": ErrorResponse, "description": "Body too large."},
    422: {"model": ErrorResponse, "description": "A field failed validation; `field` names it."},
}

Check = Callable[[], Awaitable[None]]


class ApiError(Exception):
    def __init__(self, status: int, field: str, reason: str, error: str = "invalid_request") -> None:
        self.status, self.field, self.reason, self.error = status, field, reason, error
        super().__init__(f"{field}: {reason}")


@dataclass
class Services:
    """What the API talks to; tests pass fakes. ``recommend`` and ``checks`` are async."""

    recommend: Callable[[RecommendRequest], Awaitable[RecommendResult]]
    send_event: Callable[[InteractionEvent], None]
    checks: dict[str, Check] = field(default_factory=dict)
    close: Callable[[], Awaitable[None]] | None = None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "streamrec_api_requests", "HTTP requests by endpoint and status.", ["endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "streamrec_api_request_seconds", "Request latency by endpoint.", ["endpoint"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )  # fmt: skip
        self.flags = Counter(
            "streamrec_api_recommendation_flags", "Recommendation answers by flag.", ["flag"], registry=self.registry
        )
        self.events = Counter("streamrec_api_events", "Interaction events accepted.", registry=self.registry)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query")]
    return ".".join(parts) or "<body>"


def _error_body(status: int, field: str, reason: str, error: str, errors: list[dict[str, str]] | None = None) -> Any:
    body = {"error": error, "field": field, "reason": reason, "errors": errors or [{"field": field, "reason": reason}]}
    return JSONResponse(body, status_code=status)


def _validation_errors(errors: list[Any]) -> tuple[int, list[dict[str, str]]]:
    out = []
    status = 422
    for err in errors:
        kind = err.get("type", "")
        loc = err.get("loc", ())
        if kind == "json_invalid":
            status = 400
            out.append({"field": "<body>", "reason": f"not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}"})
            continue
        reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            reason = "unknown field"
        elif kind == "missing":
            reason = "field required"
        elif kind == "string_pattern_mismatch":
            reason = "must be 1-128 characters of A-Z a-z 0-9 . _ : @ + - / (no spaces or braces)"
        out.append({"field": _field(loc), "reason": reason})
    return status, out


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
            body[key] = int(raw) if raw.lstrip("-").isdigit() else raw
        elif key == "timestamp":
            body[key] = int(raw) if raw.isdigit() else raw
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


def to_pipeline_request(req: RecommendationRequest) -> RecommendRequest:
    return RecommendRequest(
        user_id=req.user_id,
        k=req.k,
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
        generated_at=datetime.now(UTC),
        timings_ms=result.timings_ms if req.timings else None,
    )


def default_services(serving: ServingSettings) -> Services:
    """The real clients: Triton over gRPC (aio), Kafka producer, Redis and Feast readiness."""
    import anyio
    import redis.asyncio as aioredis

    from serving.pipeline.stores import FeastUserFeatures
    from streamrec.client.producer import InteractionProducer
    from streamrec.features import USER_COUNT_FEATURES
    from streamrec.pipeline_client import AsyncPipelineClient
    from streamrec.settings import KafkaSettings, RedisSettings

    client = AsyncPipelineClient()
    redis_settings = RedisSettings.load()
    redis_client = aioredis.Redis.from_url(redis_settings.effective_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    feast = FeastUserFeatures(
        serving.feast_repo,
        serving.feast_user_view,
        serving.recent_items_field,
        USER_COUNT_FEATURES,
        redis_url=redis_settings.effective_url,
        project=serving.feast_project,
        registry=serving.feast_registry,
    )
    producer: list[InteractionProducer] = []

    def send_event(event: InteractionEvent) -> None:
        if not producer:
            producer.append(InteractionProducer(KafkaSettings.load()))
        producer[0].send(event)

    async def triton() -> None:
        if not await client.ready():
            raise RuntimeError(f"ensemble {client.model} not ready at {client.settings.effective_grpc_url}")

    async def redis() -> None:
        await redis_client.execute_command("PING")

    async def feast_check() -> None:
        await anyio.to_thread.run_sync(feast.ping)

    async def close() -> None:
        await client.close()
        await redis_client.aclose()
        if producer:
            await anyio.to_thread.run_sync(producer[0].close)

    return Services(
        recommend=client.recommend,
        send_event=send_event,
        checks={"triton": triton, "redis": redis, "feast": feast_check},
        close=close,
    )


class BodyLimitMiddleware:
    """Refuses bodies whose Content-Length is over the limit before they are read (a plain ASGI middleware:
    Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and streams)."""

    def __init__(self, app: ASGIApp, max_bytes: int, refuse: Callable[[str, str], Response]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    length = value.decode("latin-1")
                    if length.isdigit() and int(length) > self.max_bytes:
                        await self.refuse(scope["path"], length)(scope, receive, send)
                        return
        await self.app(scope, receive, send)


def create_app(
    settings: ApiSettings | None = None,
    serving: ServingSettings | None = None,
    services: Services | Callable[[], Services] | None = None,
) -> FastAPI:
    settings = settings or ApiSettings.load()
    serving = serving or ServingSettings.load()
    keys = [k.get_secret_value().encode() for k in settings.api_keys]
    metrics = Metrics()
    state: dict[str, Services] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Clients are created inside the event loop (grpc.aio needs one).
        state["services"] = services() if callable(services) else services or default_services(serving)
        # Startup objects (FastAPI, pydantic, grpc) move out of the collector's generations: full collections
        # under load then scan only per-request garbage, which keeps them out of the latency tail.
        gc.freeze()
        yield
        closer = state["services"].close
        if closer is not None:
            await closer()

    app = FastAPI(
        title="streamrec recommendation API",
        version="1",
        description="Personalised recommendations from the streamrec pipeline, and HTTP event ingestion.",
        lifespan=lifespan,
    )

    async def services_() -> Services:  # async: a sync dependency would cost a thread-pool hop per request
        return state["services"]

    async def require_key(request: Request) -> None:
        if settings.auth_disabled:
            return
        given = request.headers.get(settings.key_header)
        if not given:
            raise ApiError(401, settings.key_header, "missing API key", "unauthorized")
        if not any(hmac.compare_digest(given.encode(), key) for key in keys):
            raise ApiError(401, settings.key_header, "invalid API key", "unauthorized")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.requests.labels(request.url.path, str(exc.status)).inc()
        return _error_body(exc.status, exc.field, exc.reason, exc.error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, errors = _validation_errors(list(exc.errors()))
        metrics.requests.labels(request.url.path, str(status)).inc()
        return _error_body(status, errors[0]["field"], errors[0]["reason"], "invalid_request", errors)

    def too_large(path: str, length: str) -> JSONResponse:
        metrics.requests.labels(path, "413").inc()
        reason = f"body is {length} bytes; the limit is {settings.max_body_bytes}"
        return _error_body(413, "<body>", reason, "too_large")

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, refuse=too_large)

    async def recommend(req: RecommendationRequest, svc: Services, endpoint: str) -> RecommendationResponse:
        if req.k > serving.max_k:
            raise ApiError(422, "k", f"must be at most {serving.max_k}")
        start = time.perf_counter()
        result = await svc.recommend(to_pipeline_request(req))
        for flag in result.flags:
            metrics.flags.labels(flag).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        metrics.requests.labels(endpoint, "200").inc()
        return to_response(req, result)

    @app.get(
        "/v1/recommendations",
        response_model=RecommendationResponse,
        responses=ERRORS,
        dependencies=[Depends(require_key)],
        summary="Recommendations (query parameters; lists comma-separated)",
    )
    async def get_recommendations(request: Request, svc: Services = Depends(services_)) -> RecommendationResponse:
        try:
            req = RecommendationRequest.model_validate(query_to_body(request.query_params))
        except ValidationError as exc:
            status, errors = _validation_errors(list(exc.errors()))
            raise ApiError(status, errors[0]["field"], errors[0]["reason"]) from None
        return await recommend(req, svc, "/v1/recommendations")

    @app.post(
        "/v1/recommendations",
        response_model=RecommendationResponse,
        responses=ERRORS,
        dependencies=[Depends(require_key)],
        summary="Recommendations (JSON body)",
    )
    async def post_recommendations(
        body: RecommendationRequest, svc: Services = Depends(services_)
    ) -> RecommendationResponse:
        return await recommend(body, svc, "/v1/recommendations")

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=EventsAccepted,
        responses=ERRORS,
        dependencies=[Depends(require_key)],
        summary="Ingest interaction events (one object or an array of up to 500) into Kafka",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": InteractionEvent.model_json_schema(mode="validation")}},
            }
        },
    )
    async def post_events(request: Request, svc: Services = Depends(services_)) -> EventsAccepted:
        raw = await request.body()
        if len(raw) > settings.max_body_bytes:
            raise ApiError(413, "<body>", f"body is {len(raw)} bytes; the limit is {settings.max_body_bytes}")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, PAYLOAD, f"not valid JSON: {exc}") from None
        items = data if isinstance(data, list) else [data]
        if not items:
            raise ApiError(422, PAYLOAD, "empty list of events")
        if len(items) > MAX_EVENTS_PER_CALL:
            raise ApiError(422, PAYLOAD, f"{len(items)} events; at most {MAX_EVENTS_PER_CALL} per call")
        events = []
        for i, item in enumerate(items):
            try:
                events.append(validate_interaction(item))
            except InvalidEventError as exc:
                where = f"[{i}].{exc.field}" if isinstance(data, list) else exc.field
                raise ApiError(422, where, exc.reason) from None
            except ValidationError as exc:  # pragma: no cover - validate_interaction converts these
                err = first_error(exc)
                raise ApiError(422, err.field, err.reason) from None
        for event in events:
            svc.send_event(event)
        metrics.events.inc(len(events))
        metrics.requests.labels("/v1/events", "202").inc()
        return EventsAccepted(accepted=len(events), event_ids=[e.event_id for e in events])

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, summary="Readiness: Triton, Redis and Feast reachable")
    async def readyz(svc: Services = Depends(services_)) -> JSONResponse:
        checks: dict[str, str] = {}
        for name, check in svc.checks.items():
            try:
                await check()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unavailable: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
