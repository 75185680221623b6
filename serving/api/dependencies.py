"""FastAPI dependencies: the per-app context (settings, limits, metrics, services) and the API-key check."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field

from fastapi import Request

from serving.api.catalog import Catalog
from serving.api.errors import ApiError
from serving.api.live import RecommendationHub
from serving.api.models import Limits
from serving.api.services import Metrics, Services
from serving.api.settings import UiSettings
from serving.settings import ApiSettings


@dataclass
class ApiContext:
    """Everything a route needs, built once by the app factory and kept in ``app.state.context``."""

    settings: ApiSettings
    limits: Limits
    ui: UiSettings
    metrics: Metrics = field(default_factory=Metrics)
    services: Services | None = None  # set by the lifespan (clients are created inside the event loop)
    hub: RecommendationHub | None = None  # set by the lifespan when the services have a live feed

    def __post_init__(self) -> None:
        self.keys = [k.get_secret_value().encode() for k in self.settings.api_keys]
        self._catalog: Catalog | None = None
        self._catalog_lock = asyncio.Lock()

    async def catalog(self) -> Catalog:
        """Loaded once, in a thread, on first use (the page's first request, not the API's start)."""
        async with self._catalog_lock:
            if self._catalog is None:
                load = self.services.catalog if self.services is not None else None
                if load is None:
                    self._catalog = Catalog({}, {}, [], "", "none")
                else:
                    self._catalog = await asyncio.get_running_loop().run_in_executor(None, load)
            return self._catalog


# The dependencies are async: a sync dependency costs a thread-pool hop per request.
async def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


async def get_services(request: Request) -> Services:
    services = (await get_context(request)).services
    if services is None:  # pragma: no cover - only before the lifespan ran
        raise RuntimeError("the API's services are not started")
    return services


def check_key(context: ApiContext, given: str | None) -> None:
    settings = context.settings
    if settings.auth_disabled:
        return
    if not given:
        raise ApiError(401, settings.key_header, "missing API key", "unauthorized")
    if not any(hmac.compare_digest(given.encode(), key) for key in context.keys):
        raise ApiError(401, settings.key_header, "invalid API key", "unauthorized")


async def require_key(request: Request) -> None:
    context = await get_context(request)
    check_key(context, request.headers.get(context.settings.key_header))
