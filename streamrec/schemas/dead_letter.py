"""Dead letters: what a consumer could not accept, with the reason and where it came from.

A dead letter must always fit under the broker's message limit, however large the rejected message was:
base64 makes the original 4/3 larger, so an original close to the limit cannot be copied whole. Such an
original is cut to what fits and the record says so (``truncated``), with the full size and the SHA-256
of the full original, so it can still be identified (and found again in the source topic by its position).

Version 2 of the record added ``reason_code``, ``truncated``, ``original_value_bytes``,
``original_value_sha256`` and ``original_key_bytes``. Readers use :func:`parse_dead_letter`, which
accepts both versions (a version-1 record is always whole and has no ``reason_code``).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StrictInt, ValidationError

from streamrec.errors import InvalidEventError, RejectReason
from streamrec.schemas.codec import first_error
from streamrec.schemas.events import ContractModel, SchemaVersion, Timestamp, exact_int

DEAD_LETTER_VERSION: Literal[2] = 2
SUPPORTED_DEAD_LETTER_VERSIONS = frozenset({1, 2})
#: The producer's default ``message.max.bytes`` (librdkafka); KafkaSettings has no setting for it.
DEFAULT_MAX_RECORD_BYTES = 1_000_000
#: Kept free for the record's framing and headers, which the broker counts too.
RECORD_OVERHEAD_BYTES = 512
#: Longer keys are cut (a user id is at most 128 characters, so such a key is invalid anyway).
MAX_KEY_BYTES = 1024
#: The smallest limit a writer accepts: room for the fixed fields plus some of the original.
MIN_RECORD_BYTES = 16_384
_MAX_REASON_CHARS = 1000
_MAX_FIELD_CHARS = 200


class DeadLetterV1(ContractModel):
    """A rejected message with everything needed to inspect or replay it."""

    # Version 1, read only (its original is always whole); named as it was so its JSON Schema stays as published.
    model_config = ConfigDict(**ContractModel.model_config, title="DeadLetter")

    reason: str = Field(description="Why it was rejected, naming the field.")
    field: str = Field(description="Dotted path of the offending field, or <payload>.")
    original_value_b64: str = Field(description="The original message value, base64.")
    original_key_b64: str | None = Field(None, description="The original message key, base64.")
    source_topic: str = Field(description="Topic the message was read from.")
    source_partition: StrictInt = Field(ge=0, description="Partition it was read from.")
    source_offset: StrictInt = Field(ge=0, description="Offset it was read from.")
    rejected_at: Timestamp = Field(description="When it was rejected (UTC).")
    rejected_by: str = Field(description="Component that rejected it.")
    schema_version: SchemaVersion = Field(1, description="Contract version of this message.")


class DeadLetter(ContractModel):
    """A rejected message with everything needed to inspect or replay it (version 2)."""

    reason: str = Field(description="Why it was rejected, naming the field.")
    reason_code: RejectReason | None = Field(
        description="The reason's category, from a closed list (null only in records upgraded from version 1)."
    )
    field: str = Field(description="Dotted path of the offending field, <payload> or <key>.")
    original_value_b64: str = Field(
        description="The original message value, base64: whole, or its first bytes when truncated."
    )
    original_value_bytes: StrictInt = Field(ge=0, description="Size of the whole original value in bytes.")
    original_value_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the whole original value."
    )
    original_key_b64: str | None = Field(
        None, description="The original message key, base64 (first bytes when truncated); null: no key."
    )
    original_key_bytes: StrictInt | None = Field(None, ge=0, description="Size of the whole original key in bytes.")
    truncated: bool = Field(description="True when the value or the key above is cut; the sizes and hash are whole.")
    source_topic: str = Field(description="Topic the message was read from.")
    source_partition: StrictInt = Field(ge=0, description="Partition it was read from.")
    source_offset: StrictInt = Field(ge=0, description="Offset it was read from.")
    rejected_at: Timestamp = Field(description="When it was rejected (UTC).")
    rejected_by: str = Field(description="Component that rejected it.")
    schema_version: Annotated[Literal[2], BeforeValidator(exact_int)] = Field(
        DEAD_LETTER_VERSION, description="Contract version of this message."
    )

    def original_value(self) -> bytes:
        """The original value, or its first bytes when ``truncated``."""
        return base64.b64decode(self.original_value_b64)


@dataclass(frozen=True)
class DeadLetterRecord:
    """A dead letter as it goes to Kafka: key and value, together under the limit it was built for."""

    key: bytes | None
    value: bytes
    letter: DeadLetter

    @property
    def size(self) -> int:
        return len(self.value) + len(self.key or b"")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build_dead_letter(
    error: InvalidEventError,
    value: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    rejected_by: str,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> DeadLetterRecord:
    """The dead letter of one rejected message, its original cut if needed so that key + value stay
    under ``max_record_bytes`` minus :data:`RECORD_OVERHEAD_BYTES`."""
    if max_record_bytes < MIN_RECORD_BYTES:
        raise ValueError(f"max_record_bytes {max_record_bytes} is below the minimum {MIN_RECORD_BYTES}")
    value = value or b""
    kept_key = key[:MAX_KEY_BYTES] if key is not None else None
    record_key = key if key is not None and len(key) <= MAX_KEY_BYTES else None
    fields = {
        "reason": str(error)[:_MAX_REASON_CHARS],
        "reason_code": error.code,
        "field": error.field[:_MAX_FIELD_CHARS],
        "original_value_bytes": len(value),
        "original_value_sha256": hashlib.sha256(value).hexdigest(),
        "original_key_b64": _b64(kept_key) if kept_key is not None else None,
        "original_key_bytes": len(key) if key is not None else None,
        "source_topic": topic,
        "source_partition": max(partition, 0),
        "source_offset": max(offset, 0),
        "rejected_at": datetime.now(UTC),
        "rejected_by": rejected_by,
    }
    budget = max_record_bytes - RECORD_OVERHEAD_BYTES - len(record_key or b"")
    key_cut = key is not None and len(key) > MAX_KEY_BYTES
    whole = DeadLetter(**fields, original_value_b64=_b64(value), truncated=key_cut)
    encoded = whole.model_dump_json().encode()
    if len(encoded) <= budget:
        return DeadLetterRecord(record_key, encoded, whole)
    # Everything but the original is small and fixed: measure it, then keep as many whole base64
    # quanta (3 bytes -> 4 characters, plain ASCII, never escaped in JSON) as the rest allows.
    empty = DeadLetter(**fields, original_value_b64="", truncated=True)
    room = budget - len(empty.model_dump_json().encode())
    keep = max(room, 0) // 4 * 3
    cut = DeadLetter(**fields, original_value_b64=_b64(value[:keep]), truncated=True)
    return DeadLetterRecord(record_key, cut.model_dump_json().encode(), cut)


def parse_dead_letter(raw: bytes) -> DeadLetter:
    """A dead letter of any supported version, as a version-2 object (version 1 is upgraded: its
    original is whole, so size and hash are computed; it has no reason code). Raises
    :class:`InvalidEventError` naming the field the version-2 contract refuses."""
    try:
        return DeadLetter.model_validate_json(raw)
    except ValidationError as v2_error:
        try:
            old = DeadLetterV1.model_validate_json(raw)
        except ValidationError:
            raise first_error(v2_error) from None
    value = base64.b64decode(old.original_value_b64)
    key = base64.b64decode(old.original_key_b64) if old.original_key_b64 is not None else None
    return DeadLetter(
        reason=old.reason,
        reason_code=None,
        field=old.field,
        original_value_b64=old.original_value_b64,
        original_value_bytes=len(value),
        original_value_sha256=hashlib.sha256(value).hexdigest(),
        original_key_b64=old.original_key_b64,
        original_key_bytes=len(key) if key is not None else None,
        truncated=False,
        source_topic=old.source_topic,
        source_partition=old.source_partition,
        source_offset=old.source_offset,
        rejected_at=old.rejected_at,
        rejected_by=old.rejected_by,
    )
