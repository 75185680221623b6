"""FastAPI application factory: ``/v1/recommendations`` (GET, POST), ``/v1/recommendations/stream`` (SSE),
``/v1/events``, ``/v1/users/known``, ``/v1/items``, ``/healthz``, ``/readyz``, ``/metrics`` and the web page
at ``/ui``.

Routes live on routers (:mod:`serving.api.routes`); this module wires them with the settings, the services
(:mod:`serving.api.services`) and the lifespan. Recommendations go through
:class:`streamrec.pipeline_client.AsyncPipelineClient` (one gRPC channel, timeouts, popular-items fallback when
Triton cannot answer: a degraded answer with a flag, never a 5xx). Every rejected request is a 4xx whose body
names the field and the reason.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import Scope

from serving.api.dependencies import ApiContext
from serving.api.errors import BodyLimitMiddleware, endpoint_label, error_body, install_error_handlers
from serving.api.live import RecommendationHub
from serving.api.models import COMPONENTS, HAND_VALIDATED_BODIES, Limits
from serving.api.routes import catalog, events, health, live, recommendations, ui
from serving.api.services import Services, default_services
from serving.api.settings import ApiGuardSettings, UiSettings
from serving.settings import ApiSettings, ServingSettings
from streamrec.schemas.events import ID_PATTERN
from streamrec.settings import FeastSettings, KafkaSettings

__all__ = ["Services", "create_app"]


def create_app(
    settings: ApiSettings | None = None,
    serving: ServingSettings | None = None,
    services: Services | Callable[[], Services] | None = None,
    feast: FeastSettings | None = None,
    ui_settings: UiSettings | None = None,
    guard: ApiGuardSettings | None = None,
) -> FastAPI:
    """``services`` (or a factory of them, called inside the event loop) replaces the real clients; the real
    clients read Feast from ``feast`` (default: ``STREAMREC_FEAST_*``)."""
    settings = settings or ApiSettings.load()
    serving = serving or ServingSettings.load()
    ui_settings = ui_settings or UiSettings.load()
    guard = guard or ApiGuardSettings.load()
    context = ApiContext(
        settings=settings,
        limits=Limits(default_k=serving.default_k, max_k=serving.max_k, max_exclude_ids=settings.max_exclude_ids),
        ui=ui_settings,
        guard=guard,
        max_future_skew_s=KafkaSettings.load().max_future_skew_s,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Clients are created inside the event loop (grpc.aio needs one).
        if callable(services):
            context.services = services()
        else:
            context.services = services or default_services(feast or FeastSettings.load(), ui=ui_settings, guard=guard)
        if context.services.live_feed is not None:
            context.hub = RecommendationHub(
                context.services.live_feed,
                max_subscribers=ui_settings.max_subscribers,
                buffer=ui_settings.subscriber_buffer,
                idle_close_s=ui_settings.idle_close_s,
                assignment_timeout_s=ui_settings.assignment_timeout_s,
            )
        # Startup objects (FastAPI, pydantic, grpc) move out of the collector's generations: full collections
        # under load then scan only per-request garbage, which keeps them out of the latency tail.
        gc.freeze()
        yield
        if context.hub is not None:
            await context.hub.close()
        if context.services.close is not None:
            await context.services.close()

    app = FastAPI(
        title="streamrec recommendation API",
        version="1",
        description="Personalised recommendations from the streamrec pipeline, and HTTP event ingestion.",
        lifespan=lifespan,
    )
    app.state.context = context
    install_error_handlers(app, context.metrics.count)

    def too_large(scope: Scope, length: str) -> Any:
        context.metrics.count(endpoint_label(app, scope), 413)
        return error_body(413, "<body>", f"body is {length} bytes; the limit is {settings.max_body_bytes}", "too_large")

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, refuse=too_large)
    for router in (recommendations.router, live.router, events.router, catalog.router, health.router, ui.data, ui.page):
        app.include_router(router)
    app.mount("/ui/static", ui.static_files(), name="ui-static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_openapi(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes),
                settings.key_header,
                context.limits,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


API_KEY_SCHEME = "ApiKey"
#: JSON Schema cannot bound a date-time; the accepted range (1973-03-03 to 2100 UTC) is documented as the years
#: 1974-2098, which stays inside it for every UTC offset.
TIMESTAMP_YEARS = r"^(19(7[4-9]|[89][0-9])|20([0-8][0-9]|9[0-8]))-"


def _bound_timestamp_strings(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("format") == "date-time" and "pattern" not in node:
            node["pattern"] = TIMESTAMP_YEARS
            node["description"] = f"{node.get('description', 'RFC 3339')}; years 1974-2098"
        for value in node.values():
            _bound_timestamp_strings(value)
    elif isinstance(node, list):
        for value in node:
            _bound_timestamp_strings(value)


def complete_openapi(schema: dict[str, Any], key_header: str, limits: Limits) -> dict[str, Any]:
    """What FastAPI cannot derive from the routes: the bodies validated by hand (events, catalog) as components
    whose references resolve, this deployment's request limits, and the API-key security scheme on every
    operation that answers 401 (so the docs page's "Try it out" sends the key)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    request = schemas.get("RecommendationRequest", {}).get("properties", {})
    for option in request.get("k", {}).get("anyOf", []):
        if option.get("type") == "integer":
            option["maximum"] = limits.max_k
    get = schema.get("paths", {}).get("/v1/recommendations", {}).get("get", {})
    for parameter in get.get("parameters", []):
        if parameter.get("name") == "k":
            parameter["schema"]["maximum"] = limits.max_k
        if parameter.get("name") == "exclude_ids" and limits.max_exclude_ids > 0:
            one = ID_PATTERN.strip("^$")
            parameter["schema"]["pattern"] = f"^({one}(,{one}){{0,{limits.max_exclude_ids - 1}}})?$"
    exclude = schemas.get("Filters", {}).get("properties", {}).get("exclude_ids")
    if exclude is not None:
        exclude["maxItems"] = limits.max_exclude_ids
    for model in HAND_VALIDATED_BODIES:
        body = model.model_json_schema(mode="validation", ref_template=f"{COMPONENTS}{{model}}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    _bound_timestamp_strings(schema)
    components["securitySchemes"] = {
        API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": key_header, "description": "An API key."}
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "401" in operation.get("responses", {}):
                operation["security"] = [{API_KEY_SCHEME: []}]
    return schema
