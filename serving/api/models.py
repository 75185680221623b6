"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these).

The models describe the shape of a request; the limits an operator sets (default and largest ``k``, most
explicit exclude ids) come from settings and are applied by :func:`apply_limits`, so one request model serves
every deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
)

from streamrec.catalog.models import CatalogItem, UserProfile
from streamrec.schemas.events import ID_PATTERN, Device, InteractionEvent, Timestamp


def _integral(value: Any) -> Any:
    """JSON Schema's ``integer`` includes ``62.0``: an integral float is that integer; a bool or string is not."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


EntityId = Annotated[str, StringConstraints(strict=True, pattern=ID_PATTERN)]
CategoryName = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]

#: Upper bounds of the settings themselves (ServingSettings.max_k <= 1000): a request above them is refused
#: by the model, before the deployment's own limits are looked at.
K_BOUND = 1000


@dataclass(frozen=True)
class Limits:
    """The deployment's request limits (``STREAMREC_SERVING_DEFAULT_K``, ``..._MAX_K``,
    ``STREAMREC_API_MAX_EXCLUDE_IDS``)."""

    default_k: int
    max_k: int
    max_exclude_ids: int


class LimitError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(_Strict):
    include_categories: list[CategoryName] = Field(
        default_factory=list, max_length=100, description="Only items of these categories."
    )
    exclude_categories: list[CategoryName] = Field(
        default_factory=list, max_length=100, description="No items of these categories."
    )
    exclude_ids: list[EntityId] = Field(
        default_factory=list, description="Never these items (at most STREAMREC_API_MAX_EXCLUDE_IDS)."
    )


class RecommendationRequest(_Strict):
    """Body of ``POST /v1/recommendations``; ``GET`` takes the same fields as query parameters."""

    user_id: EntityId | None = Field(None, description="Who the recommendations are for; omit for anonymous.")
    k: StrictInt | None = Field(
        None,
        ge=1,
        le=K_BOUND,
        description="How many items; default STREAMREC_SERVING_DEFAULT_K, at most STREAMREC_SERVING_MAX_K.",
    )
    device: Device = Field(Device.UNKNOWN, description="Device class of the client.")
    timestamp: Timestamp | None = Field(None, description="Request time (RFC 3339 or epoch ms); default now.")
    filters: Filters = Field(default_factory=Filters)
    diversity: StrictFloat | None = Field(None, ge=0, le=1, description="MMR diversity weight (0 = pure relevance).")
    max_per_category: StrictInt | None = Field(None, ge=0, le=100, description="At most this many per category.")
    temperature: StrictFloat | None = Field(None, ge=0, le=10, description="Softmax sampling temperature (0 = top-K).")
    seed: StrictInt | None = Field(None, ge=0, le=2**31 - 1, description="Sampling seed.")
    timings: StrictBool = Field(False, description="Include per-stage timings (ms).")

    # An integer in a JSON body: ``3`` or ``3.0``, never ``"3"`` or ``true``.
    _integral_k = field_validator("k", "max_per_category", "seed", "timestamp", mode="before")(_integral)


def apply_limits(req: RecommendationRequest, limits: Limits) -> int:
    """The request's ``k`` (the default when it has none); :class:`LimitError` naming the field over a limit."""
    if req.k is not None and req.k > limits.max_k:
        raise LimitError("k", f"must be at most {limits.max_k}")
    if len(req.filters.exclude_ids) > limits.max_exclude_ids:
        raise LimitError("filters.exclude_ids", f"{len(req.filters.exclude_ids)} ids; at most {limits.max_exclude_ids}")
    return req.k if req.k is not None else limits.default_k


class RecommendedItemOut(BaseModel):
    item_id: str
    score: float = Field(description="Ranker probability; the list order is the reranked order.")
    rank: int


class RecommendationResponse(BaseModel):
    user_id: str | None
    items: list[RecommendedItemOut]
    model_version: str = Field(description="Export version that produced the list ('' if none).")
    flags: list[str] = Field(description="Degradations and notes, e.g. popularity_fallback, bloom_unavailable.")
    source: str = Field(description="triton, or fallback (popular items) when Triton could not answer.")
    fallback_reason: str | None = Field(None, description="Why Triton could not answer, when source is fallback.")
    generated_at: datetime
    timings_ms: dict[str, float] | None = Field(None, description="Per-stage time in ms, when asked for.")


class EventsAccepted(BaseModel):
    accepted: int
    event_ids: list[str]


class FieldError(BaseModel):
    field: str
    reason: str


class ErrorResponse(BaseModel):
    error: str
    field: str
    reason: str
    errors: list[FieldError] = Field(default_factory=list)


#: Where the OpenAPI document keeps its schemas (``$ref`` targets).
COMPONENTS = "#/components/schemas/"


def component_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"{COMPONENTS}{model.__name__}"}


#: Bodies a route validates itself (to name the failing field its own way) rather than through FastAPI: the
#: app factory puts their schemas into the OpenAPI components.
HAND_VALIDATED_BODIES: list[type[BaseModel]] = [InteractionEvent, CatalogItem, UserProfile]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]
