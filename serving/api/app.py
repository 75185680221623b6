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

from serving.api.dependencies import ApiContext
from serving.api.errors import BodyLimitMiddleware, error_body, install_error_handlers
from serving.api.live import RecommendationHub
from serving.api.models import Limits
from serving.api.routes import events, health, live, recommendations, ui
from serving.api.services import Services, default_services
from serving.api.settings import UiSettings
from serving.settings import ApiSettings, ServingSettings
from streamrec.settings import FeastSettings

__all__ = ["Services", "create_app"]


def create_app(
    settings: ApiSettings | None = None,
    serving: ServingSettings | None = None,
    services: Services | Callable[[], Services] | None = None,
    feast: FeastSettings | None = None,
    ui_settings: UiSettings | None = None,
) -> FastAPI:
    """``services`` (or a factory of them, called inside the event loop) replaces the real clients; the real
    clients read Feast from ``feast`` (default: ``STREAMREC_FEAST_*``)."""
    settings = settings or ApiSettings.load()
    serving = serving or ServingSettings.load()
    ui_settings = ui_settings or UiSettings.load()
    context = ApiContext(
        settings=settings,
        limits=Limits(default_k=serving.default_k, max_k=serving.max_k, max_exclude_ids=settings.max_exclude_ids),
        ui=ui_settings,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Clients are created inside the event loop (grpc.aio needs one).
        if callable(services):
            context.services = services()
        else:
            context.services = services or default_services(feast or FeastSettings.load(), ui=ui_settings)
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

    def too_large(path: str, length: str) -> Any:
        context.metrics.count(path, 413)
        return error_body(413, "<body>", f"body is {length} bytes; the limit is {settings.max_body_bytes}", "too_large")

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, refuse=too_large)
    for router in (recommendations.router, live.router, events.router, health.router, ui.data, ui.page):
        app.include_router(router)
    app.mount("/ui/static", ui.static_files(), name="ui-static")
    return app
