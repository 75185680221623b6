"""The catalog contract (version 1): items, user profiles and their delete tombstones.

Items go to the compacted ``items`` topic keyed by ``item_id``; user profiles to the compacted ``users`` topic
keyed by ``user_id``. JSON on the wire, like the event contract (ids and timestamps are the same types).
The latest ``updated_at`` wins (see :mod:`streamrec.catalog.state`), so upserts and replays are idempotent.
See ``docs/catalog.md``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from streamrec.schemas.events import EntityId, Timestamp

CATALOG_SCHEMA_VERSION: Literal[1] = 1

#: Bounds of the contract, defined once: the models, the JSON Schemas and the importer all use these.
MAX_ATTRIBUTES: Final = 64
MAX_ATTRIBUTE_KEY_CHARS: Final = 64
MAX_ATTRIBUTE_STRING_CHARS: Final = 1024
MAX_TITLE_CHARS: Final = 512
MAX_DESCRIPTION_CHARS: Final = 8192
MAX_CATEGORY_CHARS: Final = 128
MAX_IMAGE_REF_CHARS: Final = 2048
#: A record larger than this (encoded JSON) is refused by the producer and rejected by consumers. Every record
#: within the bounds above fits, even with every character escaped (6 bytes) by the JSON encoder.
DEFAULT_MAX_RECORD_BYTES: Final = 524_288

AttributeValue = str | int | float | bool


def _truncate_to_ms(value: datetime) -> datetime:
    # The wire form carries milliseconds; ordering in memory must equal ordering after a round trip.
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


UpdatedAt = Annotated[Timestamp, AfterValidator(_truncate_to_ms)]


def _check_attributes(value: dict[str, Any]) -> dict[str, AttributeValue]:
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"{len(value)} attributes; the limit is {MAX_ATTRIBUTES}")
    for key, item in value.items():
        if not key or len(key) > MAX_ATTRIBUTE_KEY_CHARS:
            raise ValueError(f"attribute name {key[:80]!r} must be 1-{MAX_ATTRIBUTE_KEY_CHARS} characters")
        if isinstance(item, bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"attribute {key!r} must be a finite number, got {item}")
            continue
        if isinstance(item, str):
            if len(item) > MAX_ATTRIBUTE_STRING_CHARS:
                raise ValueError(
                    f"attribute {key!r} is {len(item)} characters; the limit is {MAX_ATTRIBUTE_STRING_CHARS}"
                )
            continue
        kind = "null" if item is None else type(item).__name__
        raise ValueError(f"attribute {key!r} must be a string, number or boolean (flat map), got {kind}")
    return value


_ATTRIBUTES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Flat map of string, number or boolean values.",
    "maxProperties": MAX_ATTRIBUTES,
    "propertyNames": {"minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY_CHARS},
    "additionalProperties": {
        "oneOf": [
            {"type": "string", "maxLength": MAX_ATTRIBUTE_STRING_CHARS},
            {"type": "number"},
            {"type": "boolean"},
        ]
    },
}

Attributes = Annotated[
    dict[str, Any],
    AfterValidator(_check_attributes),
    WithJsonSchema(_ATTRIBUTES_SCHEMA, mode="validation"),
]


_NO_SPACE = r"[^\s\x00-\x1f\x7f]"
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_SCHEME_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")
#: One regular expression for both the model and the JSON Schema, so the two cannot disagree.
IMAGE_REF_PATTERN: Final = (
    r"^(?:[Hh][Tt][Tt][Pp][Ss]?://(?:[^\s/?#@\x00-\x1f\x7f]*@)?"
    r"(?:[^\s/?#:@\[\]\x00-\x1f\x7f]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?(?:[/?#]" + _NO_SPACE + r"*)?"
    r"|(?![A-Za-z][A-Za-z0-9+.\-]+:)" + _NO_SPACE + r"+)$"
)
_IMAGE_REF = re.compile(IMAGE_REF_PATTERN)


def _check_image_ref(value: str) -> str:
    """An http(s) URL with a host, or a file path (no other scheme, no whitespace or control characters).

    A one-letter "scheme" is a Windows drive (``C:\\img.png``), so it counts as a path.
    """
    if not value or len(value) > MAX_IMAGE_REF_CHARS:
        raise ValueError(f"must be 1-{MAX_IMAGE_REF_CHARS} characters")
    if _SPACE_OR_CONTROL.search(value):
        raise ValueError("must not contain whitespace or control characters")
    scheme = _SCHEME_PREFIX.match(value)
    if scheme and scheme.group(1).lower() not in ("http", "https"):
        raise ValueError(f"must be an http(s) URL or a file path, got scheme {scheme.group(1)!r}")
    if not _IMAGE_REF.match(value):
        if scheme:
            raise ValueError(f"not a valid http(s) URL (host missing or malformed): {value[:80]!r}")
        raise ValueError(f"must be an http(s) URL or a file path: {value[:80]!r}")
    return value


ImageRef = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_check_image_ref),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IMAGE_REF_CHARS,
            "pattern": IMAGE_REF_PATTERN,
            "description": "http(s) URL with a host, or a file path.",
        },
        mode="validation",
    ),
]

Title = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_TITLE_CHARS)]
Description = Annotated[str, StringConstraints(strict=True, max_length=MAX_DESCRIPTION_CHARS)]
Category = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_CATEGORY_CHARS)]
Price = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def updated_ms(self) -> int:
        updated: datetime = getattr(self, "updated_at")  # noqa: B009 - every record has it
        return int(updated.timestamp() * 1000)


class CatalogItem(_Record):
    """An item (product, article, video) as the shop describes it. Kafka key: ``item_id``."""

    item_id: EntityId = Field(description="Item identifier (the id interaction events name).")
    title: Title = Field(description="Display name.")
    description: Description | None = Field(None, description="Longer text; embedded with the title.")
    category: Category = Field(description="One category (free text).")
    price: Price | None = Field(None, description="Non-negative, finite; currency is the shop's own.")
    image: ImageRef | None = Field(None, description="http(s) URL or file path of the item's picture.")
    available: bool = Field(True, strict=True, description="False: kept in the catalog but never recommended.")
    attributes: Attributes = Field(default_factory=dict, description="Flat map of extra fields (bounded).")
    updated_at: UpdatedAt = Field(description="When the shop changed it: RFC 3339 with offset, or epoch ms.")
    schema_version: Literal[1] = Field(CATALOG_SCHEMA_VERSION, description="Contract version of this record.")

    @property
    def key(self) -> str:
        return self.item_id


class ItemTombstone(_Record):
    """The item was deleted at ``updated_at``; an older upsert replayed later does not bring it back."""

    item_id: EntityId = Field(description="The deleted item.")
    deleted: Literal[True] = Field(description="Always true: marks a delete.")
    updated_at: UpdatedAt = Field(description="When it was deleted: RFC 3339 with offset, or epoch ms.")
    schema_version: Literal[1] = Field(CATALOG_SCHEMA_VERSION, description="Contract version of this record.")

    @property
    def key(self) -> str:
        return self.item_id


class UserProfile(_Record):
    """What the shop knows about a user (segment, country, ...). Kafka key: ``user_id``."""

    user_id: EntityId = Field(description="User identifier (the id interaction events name).")
    attributes: Attributes = Field(default_factory=dict, description="Flat map of profile fields (bounded).")
    updated_at: UpdatedAt = Field(description="When the shop changed it: RFC 3339 with offset, or epoch ms.")
    schema_version: Literal[1] = Field(CATALOG_SCHEMA_VERSION, description="Contract version of this record.")

    @property
    def key(self) -> str:
        return self.user_id


class UserTombstone(_Record):
    """The user profile was deleted at ``updated_at``."""

    user_id: EntityId = Field(description="The deleted user profile.")
    deleted: Literal[True] = Field(description="Always true: marks a delete.")
    updated_at: UpdatedAt = Field(description="When it was deleted: RFC 3339 with offset, or epoch ms.")
    schema_version: Literal[1] = Field(CATALOG_SCHEMA_VERSION, description="Contract version of this record.")

    @property
    def key(self) -> str:
        return self.user_id


ItemRecord = CatalogItem | ItemTombstone
UserRecord = UserProfile | UserTombstone
CatalogRecord = CatalogItem | ItemTombstone | UserProfile | UserTombstone
