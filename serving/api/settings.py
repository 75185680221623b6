"""Settings of the web page and its live stream (``STREAMREC_UI_``): the catalog shown on the cards and the
bounds of the Server-Sent-Events fan-out."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from streamrec.settings import ComponentSettings


class UiSettings(ComponentSettings):
    """The page at ``/ui`` and ``/v1/recommendations/stream``."""

    section: ClassVar[str] = "ui"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_UI_")

    catalog_path: Path | None = Field(
        None,
        description=(
            "items.parquet (item_id, category, price, text, image_png) shown on the cards; unset: "
            "<archive_root>/items.parquet if present, else categories from the model export."
        ),
    )
    known_users: int = Field(5, ge=0, le=100, description="Users of the export the page offers to pick.")
    stream_group_prefix: str = Field(
        "streamrec-api-live",
        min_length=1,
        description="Consumer group of the live stream: <prefix>-<host>-<pid>, one per API process.",
    )
    max_subscribers: int = Field(200, ge=1, description="Open live streams per API process; more get a 503.")
    subscriber_buffer: int = Field(
        4, ge=1, description="Lists queued per live stream; a slow reader loses the oldest, never the newest."
    )
    keepalive_s: float = Field(15.0, gt=0, description="Comment line sent on an idle live stream this often.")
    reconnect_ms: int = Field(2000, ge=100, description="Reconnect delay the stream suggests to its clients.")
    idle_close_s: float = Field(
        10.0, ge=0, description="The shared Kafka consumer closes this long after its last live stream ended."
    )
    assignment_timeout_s: float = Field(
        15.0, gt=0, description="Kafka counts as unavailable when no partition is assigned within this."
    )


class ApiGuardSettings(ComponentSettings):
    """Per-key request rate and Kafka acknowledgement bounds of the HTTP API (``STREAMREC_API_GUARD_``)."""

    section: ClassVar[str] = "api_guard"
    model_config = SettingsConfigDict(env_prefix="STREAMREC_API_GUARD_")

    rate_per_s: float = Field(
        200.0, gt=0, description="Sustained requests per second one API key may make (per API process)."
    )
    burst: int = Field(400, ge=1, description="Requests one key may make at once before the rate applies.")
    rate_limit_disabled: bool = Field(False, description="No per-key rate limit (benchmarks, trusted callers).")
    max_tracked_keys: int = Field(
        10_000, ge=1, description="Keys whose bucket is kept in memory; the least recently used is dropped first."
    )
    delivery_timeout_s: float = Field(
        10.0, gt=0, le=300, description="A Kafka write not acknowledged within this is answered 503."
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After of a 503 for a full producer queue.")
