"""Catalog records <-> bytes and JSON objects, with rejections that name the field and the reason.

The same validation runs everywhere a catalog record enters: the importer, the SDK producer and every
consumer of the ``items`` / ``users`` topics (:func:`decode_message`), and it raises the same
:class:`~streamrec.errors.InvalidEventError` as the event contract, so messages read alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from streamrec.catalog.models import (
    DEFAULT_MAX_RECORD_BYTES,
    CatalogItem,
    CatalogRecord,
    ItemRecord,
    ItemTombstone,
    UserProfile,
    UserRecord,
    UserTombstone,
)
from streamrec.errors import InvalidEventError, RejectReason
from streamrec.schemas.codec import first_error

PAYLOAD = "<payload>"
KEY = "<key>"


class CatalogKind(StrEnum):
    """Which catalog a record belongs to: items or user profiles."""

    ITEMS = "items"
    USERS = "users"

    @property
    def id_field(self) -> str:
        return "item_id" if self is CatalogKind.ITEMS else "user_id"

    @property
    def upsert_model(self) -> type[CatalogItem] | type[UserProfile]:
        return CatalogItem if self is CatalogKind.ITEMS else UserProfile

    @property
    def tombstone_model(self) -> type[ItemTombstone] | type[UserTombstone]:
        return ItemTombstone if self is CatalogKind.ITEMS else UserTombstone


def _model_for(kind: CatalogKind, data: Mapping[str, Any]) -> type[BaseModel]:
    # A record that says "deleted" (whatever the value) is validated as a tombstone, so that
    # ``"deleted": false`` is refused by name instead of being an unknown field of an upsert.
    return kind.tombstone_model if "deleted" in data else kind.upsert_model


def validate_record(kind: CatalogKind, data: object) -> CatalogRecord:
    """Validate an already-parsed JSON object (file row, API body); raises :class:`InvalidEventError`."""
    if not isinstance(data, Mapping):
        raise InvalidEventError(PAYLOAD, "expected a JSON object", RejectReason.NOT_OBJECT)
    model = _model_for(kind, data)
    try:
        record: CatalogRecord = model.model_validate(dict(data))  # type: ignore[assignment]
    except ValidationError as exc:
        raise first_error(exc) from None
    return record


def validate_item(data: object) -> ItemRecord:
    record = validate_record(CatalogKind.ITEMS, data)
    if not isinstance(record, CatalogItem | ItemTombstone):  # unreachable: kind decides the model
        raise InvalidEventError(PAYLOAD, "not an item record")
    return record


def validate_user(data: object) -> UserRecord:
    record = validate_record(CatalogKind.USERS, data)
    if not isinstance(record, UserProfile | UserTombstone):  # unreachable: kind decides the model
        raise InvalidEventError(PAYLOAD, "not a user record")
    return record


def decode_record(kind: CatalogKind, raw: bytes, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> CatalogRecord:
    """Parse and validate one record's JSON bytes; raises :class:`InvalidEventError`."""
    if len(raw) > max_bytes:
        raise InvalidEventError(
            PAYLOAD, f"payload is {len(raw)} bytes; the limit is {max_bytes}", RejectReason.TOO_LARGE
        )
    if not raw:
        raise InvalidEventError(PAYLOAD, "empty payload", RejectReason.EMPTY)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(PAYLOAD, f"not valid UTF-8 at byte {exc.start}", RejectReason.NOT_UTF8) from None
    try:
        data = _JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidEventError(
            PAYLOAD, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", RejectReason.NOT_JSON
        ) from None
    except ValueError as exc:
        raise InvalidEventError(PAYLOAD, f"not valid JSON: {exc}", RejectReason.NOT_JSON) from None
    return validate_record(kind, data)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def decode_message(
    kind: CatalogKind, key: bytes | None, value: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> CatalogRecord | None:
    """Validate a message read from the ``items`` or ``users`` topic.

    Returns the record, or ``None`` for a Kafka null value under a valid key: a purge marker that lets
    compaction drop the key's history once its explicit tombstone has been read (it changes no state).
    Raises :class:`InvalidEventError` for anything else that is wrong: the consumer sends it to the
    dead-letter topic with the reason (``streamrec.client.catalog.CatalogRejects``).
    """
    if key is None or not key:
        raise InvalidEventError(
            KEY, f"missing Kafka key; {kind.value} records are keyed by {kind.id_field}", RejectReason.KEY_MISSING
        )
    if value is None:
        try:
            key.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEventError(KEY, "Kafka key is not valid UTF-8", RejectReason.KEY_MISMATCH) from None
        return None
    record = decode_record(kind, value, max_bytes)
    check_key_matches(record, key)
    return record


def check_key_matches(record: CatalogRecord, key: bytes) -> None:
    """The Kafka key must be the record's id: compaction keeps the latest value per key."""
    if key != record.key.encode():
        field = "item_id" if isinstance(record, CatalogItem | ItemTombstone) else "user_id"
        raise InvalidEventError(
            KEY, f"Kafka key {key[:64]!r} does not match {field} {record.key!r}", RejectReason.KEY_MISMATCH
        )


def encode_record(record: CatalogRecord) -> bytes:
    """The wire form: compact JSON, optional fields left out when unset, timestamps RFC 3339 UTC."""
    return record.to_json_bytes()
