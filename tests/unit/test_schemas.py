"""The event contract: valid events round-trip; every malformed input is rejected naming the field."""

from __future__ import annotations

import json
import uuid

import jsonschema
import pytest

from streamrec.errors import InvalidEventError
from streamrec.schemas import (
    Device,
    EventType,
    InteractionEvent,
    RecommendationMessage,
    decode_interaction,
    decode_recommendation,
)
from streamrec.schemas.codec import check_key_matches, dead_letter
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
    ("unknown field", encode({**VALID, "rating": 5}), "rating", "unknown field"),
    ("context not object", encode(with_("context", "mobile")), "context", "JSON object"),
]


@pytest.mark.parametrize(("case", "raw", "field", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_events_name_field_and_reason(case: str, raw: bytes, field: str, reason: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_interaction(raw)
    assert info.value.field == field, case
    assert reason.lower() in info.value.reason.lower(), info.value.reason


def test_there_are_at_least_twenty_malformed_cases() -> None:
    assert len(MALFORMED) >= 20


def test_kafka_key_must_equal_user_id() -> None:
    event = decode_interaction(encode(VALID))
    check_key_matches(event, b"user-42")
    check_key_matches(event, None)
    with pytest.raises(InvalidEventError, match="does not match user_id"):
        check_key_matches(event, b"someone-else")


def test_dead_letter_keeps_original_bytes_reason_and_position() -> None:
    raw = b"\xff broken"
    try:
        decode_interaction(raw)
    except InvalidEventError as exc:
        letter = dead_letter(exc, raw, b"k", "interactions", 3, 17, "test")
    import base64

    assert base64.b64decode(letter.original_value_b64) == raw
    assert letter.field == "<payload>" and "UTF-8" in letter.reason
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("interactions", 3, 17)


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


def test_json_schema_agrees_with_the_models() -> None:
    schema = json.loads(schema_path("interaction_event").read_text())
    event = InteractionEvent.new("u1", "i1", "view")
    jsonschema.validate(json.loads(event.to_json_bytes()), schema)
    jsonschema.validate(with_("timestamp", 1_764_324_930_250), schema)
    for bad in (with_("event_type", "watch"), without("user_id"), with_("user_id", "")):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
