"""The versioned event contract: pydantic models, codecs, JSON Schema files and the archive layout."""

from streamrec.schemas.codec import decode_interaction, decode_recommendation, validate_interaction
from streamrec.schemas.events import (
    SCHEMA_VERSION,
    DeadLetter,
    Device,
    EventContext,
    EventType,
    InteractionEvent,
    RecommendationMessage,
    RecommendedItem,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "Device",
    "EventContext",
    "EventType",
    "InteractionEvent",
    "RecommendationMessage",
    "RecommendedItem",
    "decode_interaction",
    "decode_recommendation",
    "validate_interaction",
]
