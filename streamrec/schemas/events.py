"""The event contract (schema version 1), shared by every component.

Interaction events go to the ``interactions`` topic keyed by ``user_id``; recommendation messages go to
``recommendations`` keyed by ``user_id``; rejects go to the dead-letter topic
(:mod:`streamrec.schemas.dead_letter`).
JSON on the wire. See ``docs/events.md``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictFloat,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
)

SCHEMA_VERSION: Literal[1] = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

# Ids end up inside Redis keys ("bf:seen:{<user_id>}"), so braces, whitespace and control characters are
# refused; the rest of printable ASCII that ids commonly use is allowed.
ID_PATTERN = r"^[A-Za-z0-9._:@+\-/]{1,128}$"
EntityId = Annotated[str, StringConstraints(strict=True, pattern=ID_PATTERN)]

# Epoch-millisecond timestamps below this are almost certainly epoch *seconds* sent by mistake.
_MIN_EPOCH_MS = 100_000_000_000  # 1973-03-03
_MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    DISLIKE = "dislike"


class Device(StrEnum):
    MOBILE = "mobile"
    DESKTOP = "desktop"
    TABLET = "tablet"
    UNKNOWN = "unknown"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_epoch_ms(value: datetime) -> int:
    """Exact integer milliseconds (floor); ``int(ts.timestamp() * 1000)`` is off by one for some values."""
    return (value - _EPOCH) // _MS


def _parse_timestamp(value: Any) -> datetime:
    """RFC 3339 string with an offset, or integer epoch milliseconds; always returned in UTC."""
    if isinstance(value, bool):
        raise ValueError("expected an RFC 3339 string or integer epoch milliseconds, got a boolean")
    if isinstance(value, int):
        if value < _MIN_EPOCH_MS:
            raise ValueError(f"epoch milliseconds {value} is before 1973; was it sent in seconds?")
        if value >= _MAX_EPOCH_MS:
            raise ValueError(f"epoch milliseconds {value} is after 2100")
        return _EPOCH + timedelta(milliseconds=value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetime has no timezone; RFC 3339 needs an offset such as Z or +01:00")
        return value.astimezone(UTC)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty timestamp")
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}") from None
        if "T" not in text.upper() and " " not in text:
            raise ValueError(f"not an RFC 3339 timestamp (date only): {value[:40]!r}")
        if parsed.tzinfo is None:
            raise ValueError("timestamp has no UTC offset; RFC 3339 needs one such as Z or +01:00")
        parsed = parsed.astimezone(UTC)
        epoch_ms = to_epoch_ms(parsed)
        if not _MIN_EPOCH_MS <= epoch_ms < _MAX_EPOCH_MS:
            raise ValueError("timestamp outside the accepted range 1973..2100")
        return parsed
    raise ValueError(f"expected an RFC 3339 string or integer epoch milliseconds, got {type(value).__name__}")


def format_timestamp(value: datetime) -> str:
    """RFC 3339, UTC, millisecond precision, 'Z' suffix."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_timestamp),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "format": "date-time", "description": "RFC 3339 with a UTC offset"},
                {
                    "type": "integer",
                    "minimum": _MIN_EPOCH_MS,
                    "exclusiveMaximum": _MAX_EPOCH_MS,
                    "description": "epoch milliseconds",
                },
            ]
        },
        mode="validation",
    ),
]


# The canonical 8-4-4-4-12 form only: uuid.UUID() alone also takes braces, "urn:uuid:" and non-ASCII digits.
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _parse_uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a UUID string, got {type(value).__name__}")
    if not _UUID_RE.fullmatch(value):
        raise ValueError(f"not a UUID (8-4-4-4-12 hex digits): {value[:40]!r}")
    canonical = str(uuid.UUID(value))
    if canonical == NIL_UUID:
        # A default-initialised id, not a generated one: every such event would be a "duplicate" of the first.
        raise ValueError("the nil UUID is not a valid id; generate one (e.g. UUID version 4)")
    return canonical


def exact_int(value: Any) -> Any:
    """JSON true/false and 1.0 are not integers here (pydantic's lax mode would take them as 1)."""
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {str: "a string", float: "a number with a fraction", list: "an array", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


#: ``schema_version``: an exact integer, then one of the supported versions.
SchemaVersion = Annotated[Literal[1], BeforeValidator(exact_int)]


UuidStr = Annotated[
    str, BeforeValidator(_parse_uuid), WithJsonSchema({"type": "string", "format": "uuid"}, mode="validation")
]


class ContractModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class EventContext(ContractModel):
    """Where the interaction happened."""

    device: Device = Field(description="Device class of the client.")
    session_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)] = Field(
        description="Client session identifier."
    )
    locale: Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")] | None = (
        Field(None, description="BCP 47 language tag such as en-US.")
    )


class InteractionEvent(ContractModel):
    """One user-item interaction. Kafka key: ``user_id``."""

    event_id: UuidStr = Field(description="Unique id (UUID); duplicates are dropped by consumers.")
    user_id: EntityId = Field(description="User identifier.")
    item_id: EntityId = Field(description="Item identifier.")
    event_type: EventType = Field(description="What the user did.")
    timestamp: Timestamp = Field(description="When it happened: RFC 3339 with offset, or epoch ms. Stored UTC.")
    context: EventContext = Field(description="Device and session.")
    schema_version: SchemaVersion = Field(SCHEMA_VERSION, description="Contract version of this message.")

    @property
    def epoch_ms(self) -> int:
        return to_epoch_ms(self.timestamp)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def new(
        cls,
        user_id: str,
        item_id: str,
        event_type: EventType | str,
        *,
        timestamp: datetime | int | None = None,
        device: Device | str = Device.UNKNOWN,
        session_id: str = "default",
        locale: str | None = None,
        event_id: str | None = None,
    ) -> InteractionEvent:
        """Convenience constructor that fills event_id and timestamp."""
        return cls.model_validate(
            {
                "event_id": event_id or str(uuid.uuid4()),
                "user_id": user_id,
                "item_id": item_id,
                "event_type": str(event_type),
                "timestamp": timestamp if timestamp is not None else datetime.now(UTC),
                "context": {"device": str(device), "session_id": session_id, "locale": locale},
            }
        )


class RecommendedItem(ContractModel):
    item_id: EntityId = Field(description="Recommended item.")
    score: StrictFloat = Field(description="Final score after ranking and reranking (higher is better).")
    rank: StrictInt = Field(ge=1, description="1-based position.")


class RecommendationMessage(ContractModel):
    """Personalised recommendations pushed to the ``recommendations`` topic. Kafka key: ``user_id``."""

    user_id: EntityId = Field(description="Who the recommendations are for.")
    items: list[RecommendedItem] = Field(description="Ranked items, best first.")
    model_version: str = Field(min_length=1, description="Export version that produced them.")
    generated_at: Timestamp = Field(description="When they were generated (UTC).")
    trigger_event_id: UuidStr | None = Field(None, description="The interaction event that triggered them.")
    context: EventContext | None = Field(None, description="Context the recommendations were computed for.")
    flags: list[str] = Field(
        default_factory=list,
        description="Degradations, e.g. popularity_fallback, bloom_unavailable, features_unavailable.",
    )
    schema_version: SchemaVersion = Field(SCHEMA_VERSION, description="Contract version of this message.")
