"""The event contract: valid events round-trip; every malformed input is rejected naming the field."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from streamrec.errors import InvalidEventError, RejectReason
from streamrec.schemas import (
    DEFAULT_MAX_FUTURE_SKEW,
    Device,
    EventType,
    InteractionEvent,
    RecommendationMessage,
    check_key_matches,
    decode_interaction,
    decode_message,
    decode_recommendation,
    validate_interaction,
)
from streamrec.schemas.codec import skew_reference
from streamrec.schemas.export import MODELS, render, schema_path

VALID = {
    "event_id": "6f1c2f1e-8d2a-4a4e-9a51-0f5d3c7b9e10",
    "user_id": "user-42",
    "item_id": "item:7",
    "event_type": "click",
    "timestamp": "2026-11-28T10:15:30.250+01:00",
    "context": {"device": "mobile", "session_id": "s-1", "locale": "en-US"},
    "schema_version": 1,
}


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode()


def with_(path: str, value: object) -> dict:
    data = json.loads(json.dumps(VALID))
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return data


def without(path: str) -> dict:
    data = json.loads(json.dumps(VALID))
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    del node[leaf]
    return data


def test_valid_event_round_trips_and_is_stored_in_utc() -> None:
    event = decode_interaction(encode(VALID))
    assert event.event_type is EventType.CLICK
    assert event.context.device is Device.MOBILE
    assert event.timestamp.utcoffset().total_seconds() == 0
    assert event.timestamp.hour == 9  # 10:15 at +01:00
    wire = json.loads(event.to_json_bytes())
    assert wire["timestamp"] == "2026-11-28T09:15:30.250Z"
    assert decode_interaction(event.to_json_bytes()) == event


def test_epoch_millis_and_missing_optional_fields_are_accepted() -> None:
    data = with_("timestamp", 1_764_324_930_250)
    del data["context"]["locale"]
    del data["schema_version"]
    event = decode_interaction(encode(data))
    assert event.epoch_ms == 1_764_324_930_250
    assert event.context.locale is None
    assert event.schema_version == 1


@pytest.mark.parametrize("millis", [273_990_042_247, 1_764_324_930_001, 1_700_000_000_999])
def test_epoch_milliseconds_are_exact_both_ways(millis: int) -> None:
    # Float arithmetic (timestamp() * 1000) gives 273990042246 for the first value.
    event = decode_interaction(encode(with_("timestamp", millis)))
    assert event.epoch_ms == millis
    assert decode_interaction(event.to_json_bytes()).epoch_ms == millis


MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("not json", b"{not json", "<payload>", "not valid JSON"),
    ("truncated json", encode(VALID)[:-3], "<payload>", "not valid JSON"),
    ("json array", b"[1, 2]", "<payload>", "JSON object"),
    ("json string", b'"event"', "<payload>", "JSON object"),
    ("empty payload", b"", "<payload>", "empty"),
    ("non utf-8", b'{"user_id": "\xff\xfe"}', "<payload>", "UTF-8"),
    ("oversized", encode(with_("context.session_id", "x" * 20_000)), "<payload>", "limit"),
    ("missing event_id", encode(without("event_id")), "event_id", "required"),
    ("missing user_id", encode(without("user_id")), "user_id", "required"),
    ("missing context", encode(without("context")), "context", "required"),
    ("missing device", encode(without("context.device")), "context.device", "required"),
    ("event_id not uuid", encode(with_("event_id", "abc")), "event_id", "UUID"),
    ("event_id int", encode(with_("event_id", 12)), "event_id", "UUID"),
    ("empty user_id", encode(with_("user_id", "")), "user_id", "1-128"),
    ("empty item_id", encode(with_("item_id", "")), "item_id", "1-128"),
    ("user_id int", encode(with_("user_id", 42)), "user_id", "string"),
    ("user_id with space", encode(with_("user_id", "a b")), "user_id", "no spaces"),
    ("user_id with braces", encode(with_("user_id", "{x}")), "user_id", "braces"),
    ("user_id too long", encode(with_("user_id", "u" * 129)), "user_id", "1-128"),
    ("unknown event_type", encode(with_("event_type", "watch")), "event_type", "'view'"),
    ("event_type wrong case", encode(with_("event_type", "VIEW")), "event_type", "'view'"),
    ("bad device", encode(with_("context.device", "watch")), "context.device", "'mobile'"),
    ("empty session", encode(with_("context.session_id", "")), "context.session_id", "at least 1"),
    ("bad locale", encode(with_("context.locale", "english please")), "context.locale", "BCP 47"),
    ("timestamp garbage", encode(with_("timestamp", "yesterday")), "timestamp", "RFC 3339"),
    ("timestamp no offset", encode(with_("timestamp", "2026-11-28T10:15:30")), "timestamp", "offset"),
    ("timestamp date only", encode(with_("timestamp", "2026-11-28")), "timestamp", "date only"),
    ("timestamp seconds", encode(with_("timestamp", 1_764_324_930)), "timestamp", "seconds"),
    ("timestamp negative", encode(with_("timestamp", -5)), "timestamp", "before 1973"),
    ("timestamp far future", encode(with_("timestamp", 9_999_999_999_999)), "timestamp", "after 2100"),
    ("timestamp bool", encode(with_("timestamp", True)), "timestamp", "boolean"),
    ("timestamp float", encode(with_("timestamp", 1.5e12)), "timestamp", "float"),
    ("unsupported version", encode(with_("schema_version", 2)), "schema_version", "unsupported"),
    ("version true", encode(with_("schema_version", True)), "schema_version", "got a boolean"),
    ("version false", encode(with_("schema_version", False)), "schema_version", "got a boolean"),
    ("version float", encode(with_("schema_version", 1.0)), "schema_version", "expected an integer"),
    ("version string", encode(with_("schema_version", "1")), "schema_version", "expected an integer"),
    ("nil uuid", encode(with_("event_id", "00000000-0000-0000-0000-000000000000")), "event_id", "nil UUID"),
    ("uuid in braces", encode(with_("event_id", "{" + VALID["event_id"] + "}")), "event_id", "8-4-4-4-12"),
    ("uuid as urn", encode(with_("event_id", "urn:uuid:" + VALID["event_id"])), "event_id", "8-4-4-4-12"),
    ("uuid without dashes", encode(with_("event_id", VALID["event_id"].replace("-", ""))), "event_id", "8-4-4-4-12"),
    ("uuid non-ascii digits", encode(with_("event_id", "\u0661" * 8 + VALID["event_id"][8:])), "event_id", "8-4"),
    ("timestamp 2099", encode(with_("timestamp", "2099-01-01T00:00:00Z")), "timestamp", "300 s in the future"),
    ("unknown field", encode({**VALID, "rating": 5}), "rating", "unknown field"),
    ("context not object", encode(with_("context", "mobile")), "context", "JSON object"),
]


@pytest.mark.parametrize(("case", "raw", "field", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_events_name_field_and_reason(case: str, raw: bytes, field: str, reason: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_interaction(raw)
    assert info.value.field == field, case
    assert reason.lower() in info.value.reason.lower(), info.value.reason
    assert isinstance(info.value.code, RejectReason)


@pytest.mark.parametrize(("case", "raw", "field", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_the_api_path_refuses_the_same_events_for_the_same_reason(
    case: str, raw: bytes, field: str, reason: str
) -> None:
    try:
        data = json.loads(raw)
    except ValueError:
        pytest.skip("not JSON: the HTTP layer refuses it before validation")
    if len(raw) > 16_384:
        pytest.skip("the HTTP layer has its own body limit")
    with pytest.raises(InvalidEventError) as info:
        validate_interaction(data)
    assert (info.value.field, info.value.reason) == _decode_error(raw), case


def _decode_error(raw: bytes) -> tuple[str, str]:
    with pytest.raises(InvalidEventError) as info:
        decode_interaction(raw)
    return info.value.field, info.value.reason


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{oops", RejectReason.NOT_JSON),
        (b"[1]", RejectReason.NOT_OBJECT),
        (b"", RejectReason.EMPTY),
        (b"\xff", RejectReason.NOT_UTF8),
        (b"x" * 20_000, RejectReason.TOO_LARGE),
        (encode(without("user_id")), RejectReason.MISSING_FIELD),
        (encode(with_("schema_version", 7)), RejectReason.UNSUPPORTED_VERSION),
        (encode(with_("event_type", "watch")), RejectReason.INVALID_VALUE),
        (encode(with_("timestamp", "2099-01-01T00:00:00Z")), RejectReason.FUTURE_TIMESTAMP),
    ],
)
def test_each_rejection_has_a_reason_code_from_a_closed_set(raw: bytes, code: RejectReason) -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_interaction(raw)
    assert info.value.code is code


def test_an_unknown_field_name_chosen_by_the_sender_never_becomes_the_code() -> None:
    names = ["rating", "x" * 100, "label\nwith newline"]
    codes = set()
    for name in names:
        with pytest.raises(InvalidEventError) as info:
            decode_interaction(encode({**VALID, name: 1}))
        assert info.value.field == name  # the precise message still names it
        codes.add(info.value.code)
    assert codes == {RejectReason.UNKNOWN_FIELD}


def test_5000_nested_brackets_are_refused_as_invalid_json_not_a_crash() -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_interaction(b"[" * 5000)
    assert info.value.field == "<payload>" and "not valid JSON" in info.value.reason


# ---------------------------------------------------------------------------------------------------- clock skew

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def at(when: datetime) -> bytes:
    return encode(with_("timestamp", when.isoformat()))


def test_the_default_skew_policy_is_five_minutes() -> None:
    assert timedelta(minutes=5) == DEFAULT_MAX_FUTURE_SKEW


def test_an_event_up_to_the_skew_ahead_is_accepted_beyond_it_refused_naming_the_timestamp() -> None:
    assert decode_interaction(at(NOW + timedelta(seconds=300)), now=NOW).timestamp == NOW + timedelta(seconds=300)
    with pytest.raises(InvalidEventError) as info:
        decode_interaction(at(NOW + timedelta(seconds=300, milliseconds=1)), now=NOW)
    assert str(info.value) == "timestamp: more than 300 s in the future"
    assert info.value.code is RejectReason.FUTURE_TIMESTAMP


def test_late_events_are_always_accepted() -> None:
    assert decode_interaction(at(NOW - timedelta(days=365)), now=NOW).timestamp == NOW - timedelta(days=365)


def test_the_skew_is_a_parameter_in_seconds_or_timedelta_and_none_disables_it() -> None:
    ahead = at(NOW + timedelta(seconds=90))
    for skew in (60, 60.0, timedelta(seconds=60)):
        with pytest.raises(InvalidEventError, match="more than 60 s in the future"):
            decode_interaction(ahead, now=NOW, max_future_skew=skew)
    assert decode_interaction(ahead, now=NOW, max_future_skew=120).timestamp == NOW + timedelta(seconds=90)
    far = at(datetime(2099, 1, 1, tzinfo=UTC))
    assert decode_interaction(far, now=NOW, max_future_skew=None).timestamp.year == 2099


def test_without_now_the_validating_machines_clock_is_the_reference() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert decode_interaction(at(soon)).timestamp == soon
    with pytest.raises(InvalidEventError, match="in the future"):
        decode_interaction(at(datetime.now(UTC) + timedelta(minutes=6)))


def test_the_skew_reference_of_a_kafka_record_is_its_append_time_only() -> None:
    append_ms = 1_795_856_400_000  # 2026-11-28T09:00:00Z
    assert skew_reference(append_ms, log_append_time=True) == NOW
    assert skew_reference(append_ms, log_append_time=False) is None  # CreateTime: the producer's choice
    assert skew_reference(None, log_append_time=True) is None
    assert skew_reference(-1, log_append_time=True) is None
    raw = at(NOW + timedelta(minutes=6))
    with pytest.raises(InvalidEventError, match="in the future"):
        decode_message(raw, b"user-42", now=skew_reference(append_ms, log_append_time=True))


def test_the_api_validation_applies_the_same_skew_policy() -> None:
    with pytest.raises(InvalidEventError) as info:
        validate_interaction(with_("timestamp", "2099-01-01T00:00:00Z"))
    assert str(info.value) == "timestamp: more than 300 s in the future"
    ahead = with_("timestamp", (NOW + timedelta(minutes=10)).isoformat())
    assert validate_interaction(ahead, now=NOW, max_future_skew=timedelta(minutes=15)).timestamp > NOW


def test_there_are_at_least_twenty_malformed_cases() -> None:
    assert len(MALFORMED) >= 20


def test_kafka_key_must_equal_user_id() -> None:
    event = decode_interaction(encode(VALID))
    check_key_matches(event, b"user-42")
    with pytest.raises(InvalidEventError, match="does not match user_id") as info:
        check_key_matches(event, b"someone-else")
    assert (info.value.field, info.value.code) == ("<key>", RejectReason.KEY_MISMATCH)


@pytest.mark.parametrize("key", [None, b""])
def test_a_missing_or_empty_kafka_key_is_refused(key: bytes | None) -> None:
    event = decode_interaction(encode(VALID))
    with pytest.raises(InvalidEventError) as info:
        check_key_matches(event, key)
    assert str(info.value) == "<key>: Kafka key is missing; it must be the user_id 'user-42'"
    assert info.value.code is RejectReason.KEY_MISSING


def test_decode_message_checks_the_value_then_the_key() -> None:
    assert decode_message(encode(VALID), b"user-42").user_id == "user-42"
    with pytest.raises(InvalidEventError) as info:
        decode_message(encode(with_("event_type", "watch")), None)
    assert info.value.field == "event_type"  # the value's problem is reported first
    with pytest.raises(InvalidEventError) as info:
        decode_message(encode(VALID), None)
    assert info.value.field == "<key>"
    with pytest.raises(InvalidEventError, match="in the future"):
        decode_message(encode(with_("timestamp", "2099-01-01T00:00:00Z")), b"user-42")


def test_ints_elsewhere_in_the_contract_refuse_booleans_too() -> None:
    base = {"user_id": "u1", "model_version": "v1", "generated_at": 1_764_324_930_000}
    for item in ({"item_id": "i", "score": 1.0, "rank": True}, {"item_id": "i", "score": True, "rank": 1}):
        with pytest.raises(InvalidEventError) as info:
            decode_recommendation(encode({**base, "items": [item]}))
        assert info.value.field.startswith("items.0")


def test_recommendation_message_round_trip() -> None:
    msg = RecommendationMessage.model_validate(
        {
            "user_id": "u1",
            "items": [{"item_id": "i1", "score": 0.9, "rank": 1}, {"item_id": "i2", "score": 0.5, "rank": 2}],
            "model_version": "v1",
            "generated_at": 1_764_324_930_000,
            "trigger_event_id": str(uuid.uuid4()),
        }
    )
    assert decode_recommendation(msg.model_dump_json().encode()) == msg
    with pytest.raises(InvalidEventError) as info:
        decode_recommendation(encode({**json.loads(msg.model_dump_json()), "items": [{"item_id": "i", "rank": 0}]}))
    assert info.value.field.startswith("items.0")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_json_schemas_are_current(name: str) -> None:
    assert schema_path(name).read_text() == render(name), "run: python -m streamrec.schemas.export"


def test_every_published_event_schema_file_is_rendered_from_a_model() -> None:
    directory = schema_path("interaction_event").parent
    # The folder also holds the catalog's schemas (streamrec.catalog writes and checks those).
    prefixes = ("interaction_event.", "recommendation.", "dead_letter.")
    published = {p.name.removesuffix(".json") for p in directory.glob("*.json") if p.name.startswith(prefixes)}
    assert published == set(MODELS)


def test_json_schema_agrees_with_the_models() -> None:
    schema = json.loads(schema_path("interaction_event").read_text())
    event = InteractionEvent.new("u1", "i1", "view")
    jsonschema.validate(json.loads(event.to_json_bytes()), schema)
    jsonschema.validate(with_("timestamp", 1_764_324_930_250), schema)
    for bad in (with_("event_type", "watch"), without("user_id"), with_("user_id", "")):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
