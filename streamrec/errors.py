"""Typed errors. Every user-facing failure is one of these, so the CLI can print one line and exit 2."""

from __future__ import annotations

from enum import StrEnum


class StreamrecError(Exception):
    """Base of every error streamrec raises on purpose (bad input, bad config, unavailable service)."""

    exit_code = 2


class ConfigError(StreamrecError):
    """A setting is missing or invalid. ``source`` names where it came from (env var, file)."""

    def __init__(self, message: str, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class RejectReason(StrEnum):
    """Why a message was rejected, as a closed set: safe as a metric label, unlike the field or the reason
    text, which carry what the sender wrote (an unknown field's name, a value)."""

    TOO_LARGE = "too_large"
    EMPTY = "empty"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID_VALUE = "invalid_value"
    FUTURE_TIMESTAMP = "future_timestamp"
    KEY_MISSING = "key_missing"
    KEY_MISMATCH = "key_mismatch"


class InvalidEventError(StreamrecError):
    """An event or message failed validation. ``field`` is a dotted path, ``<payload>`` or ``<key>``;
    ``code`` is the bounded category of the reason (metric labels use it, never ``field`` or ``reason``)."""

    def __init__(self, field: str, reason: str, code: RejectReason = RejectReason.INVALID_VALUE) -> None:
        self.field = field
        self.reason = reason
        self.code = code
        super().__init__(f"{field}: {reason}")


class StackError(StreamrecError):
    """A local-stack component failed to start or is unhealthy."""

    def __init__(self, component: str, reason: str, log_path: str | None = None) -> None:
        self.component = component
        self.reason = reason
        self.log_path = log_path
        where = f" (log: {log_path})" if log_path else ""
        super().__init__(f"{component}: {reason}{where}")


class DeliveryError(StreamrecError):
    """Kafka refused or timed out delivering messages."""


class StoreUnavailableError(StreamrecError):
    """A backing store (Redis, Feast, Triton) could not be reached."""


class ArtifactError(StreamrecError):
    """An exported model artifact is missing, corrupt or does not match the expected spec."""


class DataError(StreamrecError):
    """Input data (archive, dataset) is missing, empty or corrupt."""
