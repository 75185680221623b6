"""The versioned event contract: pydantic models, codecs, JSON Schema files and the archive layout."""

from streamrec.schemas.codec import (
    DEFAULT_MAX_FUTURE_SKEW,
    check_key_matches,
    check_not_in_future,
    decode_interaction,
    decode_message,
    decode_recommendation,
    validate_interaction,
)
from streamrec.schemas.dead_letter import DeadLetter, DeadLetterRecord, build_dead_letter, parse_dead_letter
from streamrec.schemas.events import (
    SCHEMA_VERSION,
    Device,
    EventContext,
    EventType,
    InteractionEvent,
    RecommendationMessage,
    RecommendedItem,
)

__all__ = [
    "DEFAULT_MAX_FUTURE_SKEW",
    "SCHEMA_VERSION",
    "DeadLetter",
    "DeadLetterRecord",
    "Device",
    "EventContext",
    "EventType",
    "InteractionEvent",
    "RecommendationMessage",
    "RecommendedItem",
    "build_dead_letter",
    "check_key_matches",
    "check_not_in_future",
    "decode_interaction",
    "decode_message",
    "decode_recommendation",
    "parse_dead_letter",
    "validate_interaction",
]
