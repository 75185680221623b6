"""FastAPI dependencies: the per-app context (settings, limits, metrics, services) and the API-key check."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from fastapi import Request

from serving.api.catalog import Catalog
from serving.api.errors import ApiError
from serving.api.live import RecommendationHub
from serving.api.models import Limits
from serving.api.ratelimit import RateLimiter, retry_after_header
from serving.api.services import Metrics, Services
from serving.api.settings import ApiGuardSettings, UiSettings
from serving.settings import ApiSettings
from streamrec.schemas.codec import DEFAULT_MAX_FUTURE_SKEW
from streamrec.security import ApiKeyVerifier

#: Verified keys remembered (by their sha256) so a pbkdf2-stored key is derived once, not on every request.
KEY_CACHE_SIZE = 1024


@dataclass
class ApiContext:
    """Everything a route needs, built once by the app factory and kept in ``app.state.context``."""

    settings: ApiSettings
    limits: Limits
    ui: UiSettings
    guard: ApiGuardSettings = field(default_factory=ApiGuardSettings)
    max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW.total_seconds()  # events further ahead are a 422
    metrics: Metrics = field(default_factory=Metrics)
    services: Services | None = None  # set by the lifespan (clients are created inside the event loop)
    hub: RecommendationHub | None = None  # set by the lifespan when the services have a live feed

    def __post_init__(self) -> None:
        # Stored keys are hashes (sha256:... or pbkdf2_sha256:...); a plaintext entry is refused here, at start.
        self.verifier = ApiKeyVerifier(self.settings.api_keys)
        self._verified: OrderedDict[str, bool] = OrderedDict()
        self.rate = RateLimiter(self.guard.rate_per_s, self.guard.burst, self.guard.max_tracked_keys)
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

    def key_fingerprint(self, given: str) -> str | None:
        """The key's sha256 (what buckets and the cache are keyed by) when it is valid, else None."""
        fingerprint = hashlib.sha256(given.encode()).hexdigest()
        known = self._verified.get(fingerprint)
        if known is None:
            known = self.verifier.verify(given)
            self._verified[fingerprint] = known
            if len(self._verified) > KEY_CACHE_SIZE:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(fingerprint)
        return fingerprint if known else None


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
    fingerprint = context.key_fingerprint(given)
    if fingerprint is None:
        raise ApiError(401, settings.key_header, "invalid API key", "unauthorized")
    if not context.guard.rate_limit_disabled:
        wait = context.rate.take(fingerprint)
        if wait > 0:
            raise ApiError(
                429,
                settings.key_header,
                f"rate limit of {context.guard.rate_per_s:g} requests/s for this key exceeded; retry in {wait:.2f} s",
                "rate_limited",
                headers={"Retry-After": retry_after_header(wait)},
            )


async def require_key(request: Request) -> None:
    context = await get_context(request)
    check_key(context, request.headers.get(context.settings.key_header))
