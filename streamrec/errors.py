"""Typed errors. Every user-facing failure is one of these, so the CLI can print one line and exit 2."""

from __future__ import annotations


class StreamrecError(Exception):
    """Base of every error streamrec raises on purpose (bad input, bad config, unavailable service)."""

    exit_code = 2


class ConfigError(StreamrecError):
    """A setting is missing or invalid. ``source`` names where it came from (env var, file)."""

    def __init__(self, message: str, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class InvalidEventError(StreamrecError):
    """An event or message failed validation. ``field`` is a dotted path, or ``<payload>``."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
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
