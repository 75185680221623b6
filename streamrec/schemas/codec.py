"""Bytes <-> contract objects, with rejections that name the field and the reason."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from streamrec.errors import InvalidEventError
from streamrec.schemas.events import DeadLetter, InteractionEvent, RecommendationMessage

DEFAULT_MAX_EVENT_BYTES = 16_384
PAYLOAD = "<payload>"

M = TypeVar("M", bound=BaseModel)


def first_error(exc: ValidationError) -> InvalidEventError:
    """The first validation error as (dotted field path, reason)."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in err["loc"])
    kind = err["type"]
    msg = err["msg"]
    if kind == "json_invalid":
        return InvalidEventError(PAYLOAD, f"not valid JSON: {err.get('ctx', {}).get('error', msg)}")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return InvalidEventError(loc or PAYLOAD, "expected a JSON object")
    if kind == "missing":
        return InvalidEventError(loc, "field required")
    if kind == "extra_forbidden":
        return InvalidEventError(loc, "unknown field (not in schema version 1)")
    if kind == "literal_error" and loc.endswith("schema_version"):
        return InvalidEventError(loc, f"unsupported schema_version {err.get('input')!r}; supported: 1")
    if kind == "string_pattern_mismatch":
        msg = "must be 1-128 characters of A-Z a-z 0-9 . _ : @ + - / (no spaces or braces)"
        if loc.endswith("locale"):
            msg = "must be a BCP 47 language tag such as en-US"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return InvalidEventError(loc or PAYLOAD, msg)


def _decode(raw: bytes, model: type[M], max_bytes: int) -> M:
    if len(raw) > max_bytes:
        raise InvalidEventError(PAYLOAD, f"payload is {len(raw)} bytes; the limit is {max_bytes}")
    if not raw:
        raise InvalidEventError(PAYLOAD, "empty payload")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(PAYLOAD, f"not valid UTF-8 at byte {exc.start}") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise first_error(exc) from None


def decode_interaction(raw: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> InteractionEvent:
    """Parse and validate an interaction event; raises :class:`InvalidEventError`."""
    return _decode(raw, InteractionEvent, max_bytes)


def decode_recommendation(raw: bytes, max_bytes: int = 1 << 20) -> RecommendationMessage:
    return _decode(raw, RecommendationMessage, max_bytes)


def validate_interaction(data: object) -> InteractionEvent:
    """Validate an already-parsed JSON object (e.g. from the HTTP API)."""
    try:
        return InteractionEvent.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc) from None


def check_key_matches(event: InteractionEvent, key: bytes | None) -> None:
    """The Kafka key must be the user id: per-user ordering and partitioning depend on it."""
    if key is not None and key != event.user_id.encode():
        raise InvalidEventError("<key>", f"Kafka key {key[:64]!r} does not match user_id {event.user_id!r}")


def dead_letter(
    error: InvalidEventError,
    value: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    rejected_by: str,
) -> DeadLetter:
    return DeadLetter(
        reason=str(error),
        field=error.field,
        original_value_b64=base64.b64encode(value or b"").decode(),
        original_key_b64=base64.b64encode(key).decode() if key is not None else None,
        source_topic=topic,
        source_partition=max(partition, 0),
        source_offset=max(offset, 0),
        rejected_at=datetime.now(UTC),
        rejected_by=rejected_by,
    )
