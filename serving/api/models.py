"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from streamrec.schemas.events import ID_PATTERN, Device, Timestamp

EntityId = Annotated[str, StringConstraints(strict=True, pattern=ID_PATTERN)]
CategoryName = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(_Strict):
    include_categories: list[CategoryName] = Field(
        default_factory=list, max_length=100, description="Only items of these categories."
    )
    exclude_categories: list[CategoryName] = Field(
        default_factory=list, max_length=100, description="No items of these categories."
    )
    exclude_ids: list[EntityId] = Field(default_factory=list, max_length=500, description="Never these items.")


class RecommendationRequest(_Strict):
    """Body of ``POST /v1/recommendations``; ``GET`` takes the same fields as query parameters."""

    user_id: EntityId | None = Field(None, description="Who the recommendations are for; omit for anonymous.")
    k: StrictInt = Field(10, ge=1, le=100, description="How many items (1-100).")
    device: Device = Field(Device.UNKNOWN, description="Device class of the client.")
    timestamp: Timestamp | None = Field(None, description="Request time (RFC 3339 or epoch ms); default now.")
    filters: Filters = Field(default_factory=Filters)
    diversity: float | None = Field(None, ge=0, le=1, description="MMR diversity weight (0 = pure relevance).")
    max_per_category: StrictInt | None = Field(None, ge=0, le=100, description="At most this many per category.")
    temperature: float | None = Field(None, ge=0, le=10, description="Softmax sampling temperature (0 = top-K).")
    seed: StrictInt | None = Field(None, ge=0, le=2**31 - 1, description="Sampling seed.")
    timings: StrictBool = Field(False, description="Include per-stage timings (ms).")


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


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]
