"""Properties of the event decoder and validator: no input makes them raise anything but the typed
InvalidEventError, accepted events round-trip, booleans never pass for integers, future events beyond
the clock-skew policy are refused."""

from __future__ import annotations

import json
import string
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from streamrec.errors import InvalidEventError, RejectReason
from streamrec.features import EVENT_TYPES
from streamrec.schemas import (
    Device,
    InteractionEvent,
    decode_interaction,
    decode_message,
    validate_interaction,
)
from tests.properties.budget import PROPERTY_SETTINGS

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
NOW_MS = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
MIN_MS = 100_000_000_000

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)

ids = st.text(alphabet=string.ascii_letters + string.digits + "._:@+-/", min_size=1, max_size=128)
locales = st.none() | st.sampled_from(["en", "en-US", "de_DE", "pt-BR", "zh-Hant-TW"])
past_ms = st.integers(min_value=MIN_MS, max_value=NOW_MS)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    ts_ms = draw(past_ms)
    as_text = draw(st.booleans())
    timestamp: int | str = ts_ms
    if as_text:
        offset = timedelta(minutes=draw(st.integers(min_value=-14 * 60, max_value=14 * 60)))
        stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts_ms)
        timestamp = stamp.astimezone(timezone(offset)).isoformat(timespec="milliseconds")
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=draw(st.integers(min_value=1, max_value=2**128 - 1)))),
        "user_id": draw(ids),
        "item_id": draw(ids),
        "event_type": draw(st.sampled_from(EVENT_TYPES)),
        "timestamp": timestamp,
        "context": {
            "device": draw(st.sampled_from([d.value for d in Device])),
            "session_id": draw(st.text(min_size=1, max_size=128)),
        },
    }
    locale = draw(locales)
    if locale is not None or draw(st.booleans()):
        event["context"]["locale"] = locale
    if draw(st.booleans()):
        event["schema_version"] = 1
    return event


def outcome(call: Any, *args: Any, **kwargs: Any) -> InteractionEvent | InvalidEventError:
    try:
        return call(*args, **kwargs)
    except InvalidEventError as exc:  # anything else propagates and fails the property
        assert exc.field and exc.reason and isinstance(exc.code, RejectReason)
        return exc


@PROPERTY_SETTINGS
@given(json_values)
def test_any_json_value_is_accepted_or_refused_with_the_typed_error(value: Any) -> None:
    outcome(decode_interaction, json.dumps(value).encode(), now=NOW)
    outcome(validate_interaction, value, now=NOW)


@PROPERTY_SETTINGS
@given(st.binary(max_size=300), st.none() | st.binary(max_size=20))
def test_any_bytes_are_accepted_or_refused_with_the_typed_error(raw: bytes, key: bytes | None) -> None:
    outcome(decode_message, raw, key, now=NOW)


@PROPERTY_SETTINGS
@given(
    valid_events(),
    st.sampled_from(["event_id", "user_id", "item_id", "event_type", "timestamp", "context"]),
    json_values,
)
def test_a_field_replaced_by_any_json_value_is_refused_naming_that_field(
    event: dict[str, Any], name: str, value: Any
) -> None:
    mutated = {**event, name: value}
    result = outcome(decode_interaction, json.dumps(mutated).encode(), now=NOW)
    if isinstance(result, InvalidEventError):
        assert result.field == name or result.field.startswith(name + "."), (result.field, name)
    else:  # a replacement that passes is of a JSON type the contract allows there, never a boolean or null
        assert isinstance(value, (str, int, dict)) and not isinstance(value, bool), value


@PROPERTY_SETTINGS
@given(valid_events())
def test_accepted_events_round_trip_byte_for_byte(event: dict[str, Any]) -> None:
    decoded = decode_interaction(json.dumps(event).encode(), now=NOW)
    wire = decoded.to_json_bytes()
    again = decode_interaction(wire, now=NOW)
    assert again == decoded
    assert again.to_json_bytes() == wire
    assert validate_interaction(json.loads(wire), now=NOW) == decoded
    assert decode_message(wire, decoded.user_id.encode(), now=NOW) == decoded


@PROPERTY_SETTINGS
@given(valid_events())
def test_the_epoch_milliseconds_sent_are_the_ones_read(event: dict[str, Any]) -> None:
    decoded = decode_interaction(json.dumps(event).encode(), now=NOW)
    if isinstance(event["timestamp"], int):
        assert decoded.epoch_ms == event["timestamp"]
    assert decode_interaction(decoded.to_json_bytes(), now=NOW).epoch_ms == decoded.epoch_ms


@PROPERTY_SETTINGS
@given(valid_events(), st.booleans())
def test_a_boolean_is_never_taken_for_an_integer(event: dict[str, Any], flag: bool) -> None:
    for name in ("schema_version", "timestamp"):
        result = outcome(decode_interaction, json.dumps({**event, name: flag}).encode(), now=NOW)
        assert isinstance(result, InvalidEventError) and result.field == name
        assert "boolean" in result.reason


@PROPERTY_SETTINGS
@given(valid_events(), st.integers(min_value=0, max_value=10**7), st.integers(min_value=1, max_value=10**11))
def test_timestamps_beyond_the_skew_are_refused_and_within_it_accepted(
    event: dict[str, Any], skew_s: int, ahead_ms: int
) -> None:
    ts_ms = NOW_MS + ahead_ms
    assume(ts_ms < 4_102_444_800_000)
    result = outcome(
        decode_interaction, json.dumps({**event, "timestamp": ts_ms}).encode(), now=NOW, max_future_skew=skew_s
    )
    if ahead_ms > skew_s * 1000:
        assert isinstance(result, InvalidEventError)
        assert str(result) == f"timestamp: more than {skew_s} s in the future"
        assert result.code is RejectReason.FUTURE_TIMESTAMP
    else:
        assert isinstance(result, InteractionEvent) and result.epoch_ms == ts_ms


@PROPERTY_SETTINGS
@given(valid_events(), st.none() | st.binary(max_size=30))
def test_the_kafka_key_must_be_the_user_id(event: dict[str, Any], key: bytes | None) -> None:
    result = outcome(decode_message, json.dumps(event).encode(), key, now=NOW)
    if key == event["user_id"].encode():
        assert isinstance(result, InteractionEvent)
    else:
        assert isinstance(result, InvalidEventError) and result.field == "<key>"
        assert result.code in (RejectReason.KEY_MISSING, RejectReason.KEY_MISMATCH)
