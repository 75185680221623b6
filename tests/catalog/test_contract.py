"""The catalog contract: the pydantic models and the JSON Schema files accept and refuse the same records,
and every refusal names the field and the reason in the event contract's form."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from streamrec.catalog.codec import CatalogKind, decode_message, decode_record, encode_record, validate_record
from streamrec.catalog.jsonschema import MODELS, render, schema_path
from streamrec.catalog.models import (
    MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_STRING_CHARS,
    MAX_ATTRIBUTES,
    CatalogItem,
    ItemTombstone,
    UserProfile,
)
from streamrec.errors import InvalidEventError

ITEM: dict[str, Any] = {
    "item_id": "sku-1",
    "title": "Stoneware mug",
    "description": "Glazed, 350 ml.",
    "category": "kitchen",
    "price": 12.5,
    "image": "https://shop.example/img/sku-1.png",
    "available": True,
    "attributes": {"color": "blue", "volume_ml": 350, "handmade": True, "rating": 4.5},
    "updated_at": "2026-11-30T08:00:00.250+01:00",
}
USER: dict[str, Any] = {"user_id": "u-1", "attributes": {"segment": "gold", "age": 34}, "updated_at": 1_764_500_000_000}
TOMBSTONE: dict[str, Any] = {"item_id": "sku-1", "deleted": True, "updated_at": "2026-12-01T00:00:00Z"}


# jsonschema checks "format" only with a checker; RFC 3339 date-time written out here, apart from the models.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time")
def _is_rfc3339(value: object) -> bool:
    return not isinstance(value, str) or bool(RFC3339.match(value))


def check_schema(data: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.validate(data, schema, format_checker=FORMATS)


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(base))
    data.update(changes)
    return data


def without(base: dict[str, Any], name: str) -> dict[str, Any]:
    data = json.loads(json.dumps(base))
    del data[name]
    return data


def schema_for(kind: CatalogKind, data: dict[str, Any]) -> dict[str, Any]:
    name = ("catalog_item" if kind is CatalogKind.ITEMS else "catalog_user") + (
        "_tombstone" if "deleted" in data else ""
    )
    return json.loads(schema_path(name).read_text())


GOOD: list[tuple[str, CatalogKind, dict[str, Any]]] = [
    ("full item", CatalogKind.ITEMS, ITEM),
    ("minimal item", CatalogKind.ITEMS, {k: ITEM[k] for k in ("item_id", "title", "category", "updated_at")}),
    ("free item", CatalogKind.ITEMS, with_(ITEM, price=0)),
    ("image path", CatalogKind.ITEMS, with_(ITEM, image="images/sku-1.png")),
    ("windows image path", CatalogKind.ITEMS, with_(ITEM, image="C:\\shop\\sku-1.png")),
    ("image http with port", CatalogKind.ITEMS, with_(ITEM, image="http://cdn.example:8080/a.png?w=200")),
    ("unavailable", CatalogKind.ITEMS, with_(ITEM, available=False)),
    (
        "attributes at the limits",
        CatalogKind.ITEMS,
        with_(
            ITEM,
            attributes={
                f"k{n}".ljust(MAX_ATTRIBUTE_KEY_CHARS, "x"): "v" * MAX_ATTRIBUTE_STRING_CHARS
                for n in range(MAX_ATTRIBUTES)
            },
        ),
    ),
    ("epoch ms", CatalogKind.ITEMS, with_(ITEM, updated_at=1_764_500_000_123)),
    ("tombstone", CatalogKind.ITEMS, TOMBSTONE),
    ("user", CatalogKind.USERS, USER),
    ("user without attributes", CatalogKind.USERS, without(USER, "attributes")),
    ("user tombstone", CatalogKind.USERS, {"user_id": "u-1", "deleted": True, "updated_at": 1_764_500_000_000}),
]

BAD: list[tuple[str, CatalogKind, dict[str, Any], str, str]] = [
    ("missing item_id", CatalogKind.ITEMS, without(ITEM, "item_id"), "item_id", "required"),
    ("missing title", CatalogKind.ITEMS, without(ITEM, "title"), "title", "required"),
    ("missing category", CatalogKind.ITEMS, without(ITEM, "category"), "category", "required"),
    ("missing updated_at", CatalogKind.ITEMS, without(ITEM, "updated_at"), "updated_at", "required"),
    ("item_id with space", CatalogKind.ITEMS, with_(ITEM, item_id="a b"), "item_id", "no spaces"),
    ("item_id int", CatalogKind.ITEMS, with_(ITEM, item_id=7), "item_id", "string"),
    ("empty title", CatalogKind.ITEMS, with_(ITEM, title=""), "title", "at least 1"),
    ("title too long", CatalogKind.ITEMS, with_(ITEM, title="t" * 513), "title", "at most 512"),
    ("negative price", CatalogKind.ITEMS, with_(ITEM, price=-0.01), "price", "greater than or equal to 0"),
    ("price as text", CatalogKind.ITEMS, with_(ITEM, price="12.50"), "price", "valid number"),
    ("price bool", CatalogKind.ITEMS, with_(ITEM, price=True), "price", "valid number"),
    ("available as text", CatalogKind.ITEMS, with_(ITEM, available="yes"), "available", "valid boolean"),
    ("image ftp", CatalogKind.ITEMS, with_(ITEM, image="ftp://shop.example/a.png"), "image", "scheme 'ftp'"),
    ("image javascript", CatalogKind.ITEMS, with_(ITEM, image="javascript:alert(1)"), "image", "scheme"),
    ("image no host", CatalogKind.ITEMS, with_(ITEM, image="https:///a.png"), "image", "host"),
    ("image with space", CatalogKind.ITEMS, with_(ITEM, image="my pic.png"), "image", "whitespace"),
    ("image empty", CatalogKind.ITEMS, with_(ITEM, image=""), "image", "1-2048"),
    (
        "too many attributes",
        CatalogKind.ITEMS,
        with_(ITEM, attributes={f"k{n}": n for n in range(MAX_ATTRIBUTES + 1)}),
        "attributes",
        "the limit is 64",
    ),
    (
        "attribute key too long",
        CatalogKind.ITEMS,
        with_(ITEM, attributes={"k" * (MAX_ATTRIBUTE_KEY_CHARS + 1): 1}),
        "attributes",
        "1-64 characters",
    ),
    (
        "attribute value too long",
        CatalogKind.ITEMS,
        with_(ITEM, attributes={"k": "v" * (MAX_ATTRIBUTE_STRING_CHARS + 1)}),
        "attributes",
        "the limit is 1024",
    ),
    ("nested attribute", CatalogKind.ITEMS, with_(ITEM, attributes={"size": {"w": 1}}), "attributes", "flat map"),
    ("list attribute", CatalogKind.ITEMS, with_(ITEM, attributes={"tags": ["a"]}), "attributes", "flat map"),
    ("null attribute", CatalogKind.ITEMS, with_(ITEM, attributes={"tags": None}), "attributes", "got null"),
    ("attributes not an object", CatalogKind.ITEMS, with_(ITEM, attributes=[1]), "attributes", "JSON object"),
    ("unknown field", CatalogKind.ITEMS, with_(ITEM, colour="blue"), "colour", "unknown field"),
    ("timestamp garbage", CatalogKind.ITEMS, with_(ITEM, updated_at="yesterday"), "updated_at", "RFC 3339"),
    ("timestamp no offset", CatalogKind.ITEMS, with_(ITEM, updated_at="2026-11-30T08:00:00"), "updated_at", "offset"),
    ("timestamp seconds", CatalogKind.ITEMS, with_(ITEM, updated_at=1_764_500_000), "updated_at", "seconds"),
    ("deleted false", CatalogKind.ITEMS, with_(TOMBSTONE, deleted=False), "deleted", "True"),
    ("tombstone with title", CatalogKind.ITEMS, with_(TOMBSTONE, title="x"), "title", "unknown field"),
    ("tombstone without time", CatalogKind.ITEMS, without(TOMBSTONE, "updated_at"), "updated_at", "required"),
    ("user missing id", CatalogKind.USERS, without(USER, "user_id"), "user_id", "required"),
    ("user nested attribute", CatalogKind.USERS, with_(USER, attributes={"a": [1]}), "attributes", "flat map"),
    ("user with item field", CatalogKind.USERS, with_(USER, title="x"), "title", "unknown field"),
]


@pytest.mark.parametrize(("case", "kind", "data"), GOOD, ids=[g[0] for g in GOOD])
def test_good_records_pass_the_model_and_the_json_schema(case: str, kind: CatalogKind, data: dict[str, Any]) -> None:
    record = validate_record(kind, data)
    check_schema(data, schema_for(kind, data))
    wire = encode_record(record)
    assert decode_record(kind, wire) == record
    check_schema(json.loads(wire), schema_for(kind, data))


@pytest.mark.parametrize(("case", "kind", "data", "field", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_records_are_refused_by_both_naming_field_and_reason(
    case: str, kind: CatalogKind, data: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        validate_record(kind, data)
    assert info.value.field == field
    assert reason in info.value.reason, info.value.reason
    assert str(info.value) == f"{info.value.field}: {info.value.reason}"
    with pytest.raises(jsonschema.ValidationError):
        check_schema(data, schema_for(kind, data))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_json_schemas_match_the_models(name: str) -> None:
    assert schema_path(name).read_text() == render(name), "run: python -m streamrec.catalog.jsonschema"


def test_wire_form_is_utc_milliseconds_and_leaves_unset_fields_out() -> None:
    item = validate_record(CatalogKind.ITEMS, {**ITEM, "updated_at": "2026-11-30T08:00:00.250999+01:00"})
    wire = json.loads(encode_record(item))
    assert wire["updated_at"] == "2026-11-30T07:00:00.250Z"
    assert isinstance(item, CatalogItem) and item.updated_at.microsecond == 250_000
    minimal = validate_record(
        CatalogKind.ITEMS, {"item_id": "i", "title": "t", "category": "c", "updated_at": 1_764_500_000_000}
    )
    assert set(json.loads(encode_record(minimal))) == {
        "item_id",
        "title",
        "category",
        "available",
        "attributes",
        "updated_at",
        "schema_version",
    }


RAW_BAD: list[tuple[str, bytes | None, bytes | None, str, str]] = [
    ("no key", None, encode_record(validate_record(CatalogKind.ITEMS, ITEM)), "<key>", "missing Kafka key"),
    ("key mismatch", b"sku-2", encode_record(validate_record(CatalogKind.ITEMS, ITEM)), "<key>", "does not match"),
    ("not json", b"sku-1", b"{oops", "<payload>", "not valid JSON"),
    ("nan price", b"sku-1", json.dumps(ITEM).replace("12.5", "NaN").encode(), "<payload>", "NaN"),
    ("json array", b"sku-1", b"[1]", "<payload>", "JSON object"),
    ("empty", b"sku-1", b"", "<payload>", "empty"),
    ("non utf-8", b"sku-1", b'{"item_id": "\xff"}', "<payload>", "UTF-8"),
    ("oversized", b"sku-1", json.dumps(with_(ITEM, description="d" * 600_000)).encode(), "<payload>", "limit"),
]


@pytest.mark.parametrize(("case", "key", "value", "field", "reason"), RAW_BAD, ids=[r[0] for r in RAW_BAD])
def test_bad_kafka_messages_are_refused_naming_field_and_reason(
    case: str, key: bytes | None, value: bytes | None, field: str, reason: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_message(CatalogKind.ITEMS, key, value)
    assert (info.value.field, reason in info.value.reason) == (field, True), str(info.value)


def test_kafka_null_under_a_valid_key_is_a_purge_marker_not_a_reject() -> None:
    assert decode_message(CatalogKind.ITEMS, b"sku-1", None) is None
    record = decode_message(CatalogKind.ITEMS, b"sku-1", encode_record(validate_record(CatalogKind.ITEMS, TOMBSTONE)))
    assert isinstance(record, ItemTombstone)
    user = decode_message(CatalogKind.USERS, b"u-1", encode_record(validate_record(CatalogKind.USERS, USER)))
    assert isinstance(user, UserProfile) and user.attributes == {"segment": "gold", "age": 34}


def test_the_largest_record_the_bounds_allow_fits_the_record_limit() -> None:
    from streamrec.catalog.models import (
        DEFAULT_MAX_RECORD_BYTES,
        MAX_CATEGORY_CHARS,
        MAX_DESCRIPTION_CHARS,
        MAX_IMAGE_REF_CHARS,
        MAX_TITLE_CHARS,
    )

    worst = "\x01"  # escaped as \u0001: six bytes per character
    item = validate_record(
        CatalogKind.ITEMS,
        {
            "item_id": "i" * 128,
            "title": worst * MAX_TITLE_CHARS,
            "description": worst * MAX_DESCRIPTION_CHARS,
            "category": worst * MAX_CATEGORY_CHARS,
            "price": 1.7976931348623157e308,
            "image": "https://h/" + "p" * (MAX_IMAGE_REF_CHARS - 10),
            "attributes": {
                f"{n:02d}".ljust(MAX_ATTRIBUTE_KEY_CHARS, worst): worst * MAX_ATTRIBUTE_STRING_CHARS
                for n in range(MAX_ATTRIBUTES)
            },
            "updated_at": 1_764_500_000_000,
        },
    )
    assert len(encode_record(item)) <= DEFAULT_MAX_RECORD_BYTES
