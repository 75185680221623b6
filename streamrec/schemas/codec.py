"""Bytes <-> contract objects, with rejections that name the field and the reason.

Every consumer of interaction events (the HTTP API, the worker, the archiver, the CLI and the producer
SDK) validates through :func:`decode_interaction` / :func:`validate_interaction` and, for Kafka messages,
:func:`check_key_matches`, so they all accept and refuse exactly the same messages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from streamrec.errors import InvalidEventError, RejectReason
from streamrec.schemas.events import InteractionEvent, RecommendationMessage

DEFAULT_MAX_EVENT_BYTES = 16_384
#: How far ahead of the validating clock an event's timestamp may be (the clock-skew policy). An event
#: from the future would move the user's windows past every real bucket, so it is refused instead.
DEFAULT_MAX_FUTURE_SKEW = timedelta(minutes=5)
PAYLOAD = "<payload>"
KEY = "<key>"

M = TypeVar("M", bound=BaseModel)

_CODE_BY_KIND = {
    "json_invalid": RejectReason.NOT_JSON,
    "model_type": RejectReason.NOT_OBJECT,
    "dict_type": RejectReason.NOT_OBJECT,
    "model_attributes_type": RejectReason.NOT_OBJECT,
    "missing": RejectReason.MISSING_FIELD,
    "extra_forbidden": RejectReason.UNKNOWN_FIELD,
}


def first_error(exc: ValidationError) -> InvalidEventError:
    """The first validation error as (dotted field path, reason, bounded reason code)."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in err["loc"])
    kind = err["type"]
    msg = err["msg"]
    code = _CODE_BY_KIND.get(kind, RejectReason.INVALID_VALUE)
    if kind == "json_invalid":
        return InvalidEventError(PAYLOAD, f"not valid JSON: {err.get('ctx', {}).get('error', msg)}", code)
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return InvalidEventError(loc or PAYLOAD, "expected a JSON object", code)
    if kind == "missing":
        return InvalidEventError(loc, "field required", code)
    if kind == "extra_forbidden":
        return InvalidEventError(loc, "unknown field (not in schema version 1)", code)
    if kind == "literal_error" and loc.endswith("schema_version"):
        return InvalidEventError(
            loc, f"unsupported schema_version {err.get('input')!r}; supported: 1", RejectReason.UNSUPPORTED_VERSION
        )
    if kind == "string_pattern_mismatch":
        msg = "must be 1-128 characters of A-Z a-z 0-9 . _ : @ + - / (no spaces or braces)"
        if loc.endswith("locale"):
            msg = "must be a BCP 47 language tag such as en-US"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return InvalidEventError(loc or PAYLOAD, msg, code)


def _decode(raw: bytes, model: type[M], max_bytes: int) -> M:
    if len(raw) > max_bytes:
        raise InvalidEventError(
            PAYLOAD, f"payload is {len(raw)} bytes; the limit is {max_bytes}", RejectReason.TOO_LARGE
        )
    if not raw:
        raise InvalidEventError(PAYLOAD, "empty payload", RejectReason.EMPTY)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(PAYLOAD, f"not valid UTF-8 at byte {exc.start}", RejectReason.NOT_UTF8) from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise first_error(exc) from None
    except RecursionError:  # pragma: no cover - pydantic's parser limits nesting itself; kept as a guard
        raise InvalidEventError(PAYLOAD, "not valid JSON: nested too deeply", RejectReason.NOT_JSON) from None


def _skew(value: timedelta | float | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


def _seconds(skew: timedelta) -> str:
    whole = skew // timedelta(seconds=1)
    return str(whole) if skew == timedelta(seconds=whole) else f"{skew.total_seconds():.3f}".rstrip("0")


def check_not_in_future(
    event: InteractionEvent,
    max_future_skew: timedelta | float | None = DEFAULT_MAX_FUTURE_SKEW,
    now: datetime | None = None,
) -> InteractionEvent:
    """Refuse an event stamped more than ``max_future_skew`` (a timedelta or seconds; None: no limit)
    ahead of ``now`` (default: this machine's clock, UTC). Late events are always accepted."""
    skew = _skew(max_future_skew)
    if skew is None:
        return event
    reference = now if now is not None else datetime.now(UTC)
    if event.timestamp - reference > skew:
        raise InvalidEventError(
            "timestamp", f"more than {_seconds(skew)} s in the future", RejectReason.FUTURE_TIMESTAMP
        )
    return event


def skew_reference(timestamp_ms: int | None, log_append_time: bool) -> datetime | None:
    """The ``now`` a Kafka consumer passes to the skew policy: the broker's append time of the record when
    the topic stamps ``LogAppendTime``, the same for every consumer group and every re-read, so the worker
    and the archiver always decide alike. None (the validating machine's clock) otherwise: a
    ``CreateTime`` is whatever the producer chose."""
    if not log_append_time or timestamp_ms is None or timestamp_ms <= 0:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=timestamp_ms)


def decode_interaction(
    raw: bytes,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    *,
    max_future_skew: timedelta | float | None = DEFAULT_MAX_FUTURE_SKEW,
    now: datetime | None = None,
) -> InteractionEvent:
    """Parse and validate an interaction event, clock-skew policy included; raises :class:`InvalidEventError`."""
    return check_not_in_future(_decode(raw, InteractionEvent, max_bytes), max_future_skew, now)


def decode_recommendation(raw: bytes, max_bytes: int = 1 << 20) -> RecommendationMessage:
    return _decode(raw, RecommendationMessage, max_bytes)


def validate_interaction(
    data: object,
    *,
    max_future_skew: timedelta | float | None = DEFAULT_MAX_FUTURE_SKEW,
    now: datetime | None = None,
) -> InteractionEvent:
    """Validate an already-parsed JSON object (e.g. from the HTTP API), clock-skew policy included."""
    try:
        event = InteractionEvent.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc) from None
    return check_not_in_future(event, max_future_skew, now)


def check_key_matches(event: InteractionEvent, key: bytes | None) -> None:
    """The Kafka key must be the user id: per-user ordering and partitioning depend on it.

    A missing (null) or empty key is refused too: the default partitioner spreads such messages over
    every partition, which would split one user's state across workers.
    """
    if not key:
        raise InvalidEventError(
            KEY, f"Kafka key is missing; it must be the user_id {event.user_id!r}", RejectReason.KEY_MISSING
        )
    if key != event.user_id.encode():
        raise InvalidEventError(
            KEY, f"Kafka key {key[:64]!r} does not match user_id {event.user_id!r}", RejectReason.KEY_MISMATCH
        )


def decode_message(
    value: bytes | None,
    key: bytes | None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    *,
    max_future_skew: timedelta | float | None = DEFAULT_MAX_FUTURE_SKEW,
    now: datetime | None = None,
) -> InteractionEvent:
    """One Kafka message of the interactions topic: value decoded and validated, then its key checked.
    The one call every consumer of the topic (worker, archiver) makes, so their decisions agree."""
    event = decode_interaction(value or b"", max_bytes, max_future_skew=max_future_skew, now=now)
    check_key_matches(event, key)
    return event
