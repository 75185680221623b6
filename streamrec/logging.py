"""Logging, configured once per process by the CLI: level, text or JSON lines, component and trace fields.

``STREAMREC_LOG_LEVEL`` (or ``--log-level``) sets the level, ``STREAMREC_LOG_FORMAT=json|text`` the format.
A JSON line carries ``ts``, ``level``, ``logger``, ``component``, ``message`` and, when known, ``trace_id`` and
``span_id``: those of the current OpenTelemetry span if one is recording, else those bound with
:func:`bind_trace` (the API binds the request's ``traceparent``), plus anything passed as ``extra=``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from streamrec.errors import ConfigError

LogFormat = Literal["text", "json"]
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS: tuple[LogFormat, ...] = ("text", "json")
LEVEL_ENV = "STREAMREC_LOG_LEVEL"
FORMAT_ENV = "STREAMREC_LOG_FORMAT"
#: Loggers quieted to warnings unless the level is debug (one line per HTTP request, per FAISS import).
CHATTY_LIBRARIES = ("httpx", "httpcore", "faiss.loader", "urllib3")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(component)s %(name)s: %(message)s"

_trace: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("streamrec_trace", default=None)
#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and goes into the JSON line.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextmanager
def bind_trace(trace_id: str, span_id: str = "") -> Iterator[None]:
    """Log lines emitted inside (this task or thread) carry these trace fields."""
    token = _trace.set((trace_id, span_id))
    try:
        yield
    finally:
        _trace.reset(token)


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """``00-<32 hex trace id>-<16 hex span id>-<flags>`` (W3C Trace Context) -> (trace id, span id)."""
    parts = (header or "").strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    if set(parts[1]) == {"0"} or set(parts[2]) == {"0"}:
        return None
    return parts[1], parts[2]


def current_trace() -> tuple[str, str] | None:
    try:
        from opentelemetry import trace
    except ImportError:
        trace = None  # type: ignore[assignment]
    if trace is not None:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
    return _trace.get()


class ContextFilter(logging.Filter):
    """Adds ``component``, ``trace_id`` and ``span_id`` to every record that passes the handler."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "component"):
            record.component = self.component
        if not hasattr(record, "trace_id"):
            ids = current_trace()
            record.trace_id, record.span_id = ids if ids else ("", "")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; keys with empty values are left out."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "component": getattr(record, "component", ""),
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps({k: v for k, v in line.items() if v not in ("", None)}, default=str)


def _choice(value: str | None, env: str, allowed: tuple[str, ...], default: str) -> str:
    chosen = (value or os.environ.get(env) or default).strip().lower()
    if chosen not in allowed:
        raise ConfigError(f"must be one of {', '.join(allowed)}, got {chosen!r}", source=env)
    return chosen


def configure(
    component: str,
    level: str | None = None,
    fmt: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install the one root handler (replacing one installed before); returns it.

    ``level``/``fmt`` override ``STREAMREC_LOG_LEVEL``/``STREAMREC_LOG_FORMAT`` (defaults: info, text).
    """
    chosen_level = _choice(level, LEVEL_ENV, LEVELS, "info")
    chosen_format = _choice(fmt, FORMAT_ENV, FORMATS, "text")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(component))
    handler.setFormatter(JsonFormatter() if chosen_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.set_name("streamrec")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "streamrec"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(chosen_level.upper())
    # Libraries that narrate every request or import at INFO: their lines stay available at debug.
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level) if root.level > logging.DEBUG else 0)
    logging.captureWarnings(True)
    return handler


def librdkafka_logger(component: str) -> logging.Logger:
    """Logger to pass as confluent-kafka's ``logger`` setting: librdkafka's own lines (syslog levels mapped)."""
    return logging.getLogger(f"librdkafka.{component}")
