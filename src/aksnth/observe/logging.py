"""Structured logs: JSON lines by default, one readable line with ``-log.pretty``; context and redaction.

* Context (node, resource, event_id, event_type, incarnation, action, ...) lives in a ``ContextVar``;
  :func:`log_context` adds fields for a block, :func:`bind` for the rest of the current task. A
  filter copies it onto every record, so ``getLogger(__name__)`` callers need nothing special.
* Redaction happens in the formatter, on the message, every string field and the exception text,
  by the process's :class:`~aksnth.observe.redaction.Redactor`: registered secrets
  (:func:`register_secret`) and known secret shapes.
* ``httpx2``/``httpcore2`` (the HTTP client of everything here) log full URLs,
  which can carry a Telegram token; they are held at WARNING.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from aksnth.errors import ConfigError
from aksnth.observe.redaction import Redactor

CONTEXT_FIELDS = ("node", "resource", "event_id", "event_type", "incarnation", "action")
RESERVED_FIELDS = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})
QUIET_LOGGERS = ("httpx2", "httpcore2", "hpack")

# The Go original's level names (logrus), case-insensitive; the one table -log.level is read with.
LEVELS: Mapping[str, int] = MappingProxyType(
    {
        "trace": logging.DEBUG,
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warn": logging.WARNING,
        "warning": logging.WARNING,
        "error": logging.ERROR,
        "fatal": logging.CRITICAL,
        "panic": logging.CRITICAL,
        "critical": logging.CRITICAL,
    }
)


def parse_level(value: str, *, where: str = "-log.level") -> int:
    """``-log.level`` as the Go original accepts it, case-insensitive; ``fatal``/``panic`` → CRITICAL.

    An unknown name is a ``ConfigError`` naming ``where`` it came from (the flag, or a config key).
    """
    level = LEVELS.get(value.strip().lower())
    if level is None:
        raise ConfigError(f"{where}: unknown log level {value!r} (use debug, info, warn, error or fatal)")
    return level


# --- redaction ---------------------------------------------------------------------------------------

REDACTOR = Redactor()


def register_secret(value: str) -> None:
    """Never log ``value``: every message and exception text is masked by the process redactor."""
    REDACTOR.register_secret(value)


def redact(text: str) -> str:
    """``text`` with secrets masked: for messages built outside logging (errors shown to users)."""
    return REDACTOR.redact(text)


# --- context ----------------------------------------------------------------------------------------

# Values are never mutated, only replaced, so one shared empty default is safe.
_EMPTY: Mapping[str, object] = MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "aksnth_log_context", default=_EMPTY
)


def _checked(fields: Mapping[str, object]) -> dict[str, object]:
    clash = RESERVED_FIELDS.intersection(fields)
    if clash:
        raise ValueError(f"log context fields {sorted(clash)} clash with the log record's own fields")
    return {key: value for key, value in fields.items()}


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add fields to every log record emitted inside the block (in this task and tasks it creates)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **_checked(fields)})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: object) -> None:
    """Add fields for the rest of the current task (each asyncio task has its own copy)."""
    _CONTEXT.set({**_CONTEXT.get(), **_checked(fields)})


def current_context() -> Mapping[str, object]:
    return dict(_CONTEXT.get())


_CONTEXT_ATTR = "aksnth_context"
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    _CONTEXT_ATTR,
}


class ContextFilter(logging.Filter):
    """Copies the current log context onto the record (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        setattr(record, _CONTEXT_ATTR, _CONTEXT.get())
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """Context fields, then ``extra=`` fields (which win), minus reserved names."""
    fields: dict[str, object] = dict(getattr(record, _CONTEXT_ATTR, None) or _CONTEXT.get())
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRS and not key.startswith("_"):
            fields[key] = value
    for key in RESERVED_FIELDS.intersection(fields):
        fields[f"field_{key}"] = fields.pop(key)
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _level_name(record: logging.LogRecord) -> str:
    return record.levelname.lower()


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def _exception_text(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return self.redactor.redact(record.exc_text) if record.exc_text else ""

    def _value(self, value: object) -> Any:
        if isinstance(value, str):
            return self.redactor.redact(value)
        if isinstance(value, bool | int | float) or value is None:
            return value
        return self.redactor.redact(str(value))


class JsonFormatter(_RedactingFormatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, context fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": _level_name(record),
            "logger": record.name,
            "msg": self.redactor.redact(record.getMessage()),
        }
        for key, value in _fields(record).items():
            line[key] = self._value(value)
        exc = self._exception_text(record)
        if exc:
            line["exc"] = exc
        if record.stack_info:
            line["stack"] = self.redactor.redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class PrettyFormatter(_RedactingFormatter):
    """``2024-05-01T12:00:00.000Z INFO  aksnth.handler: cordoned node=n1 event_id=...``."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname:<8} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{key}={self._pretty_value(value)}" for key, value in _fields(record).items())
        if fields:
            text = f"{text}  {fields}"
        text = self.redactor.redact(text)
        exc = self._exception_text(record)
        if exc:
            text = f"{text}\n{exc}"
        if record.stack_info:
            text = f"{text}\n{self.redactor.redact(self.formatStack(record.stack_info))}"
        return text

    @staticmethod
    def _pretty_value(value: object) -> str:
        text = str(value)
        return json.dumps(text) if (not text or any(c.isspace() or c in '"=' for c in text)) else text


# --- set-up -----------------------------------------------------------------------------------------

_installed: logging.Handler | None = None


def configure_logging(
    level: str = "info",
    pretty: bool = False,
    *,
    stream: TextIO | None = None,
    redactor: Redactor = REDACTOR,
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as JSON lines, or as readable lines with ``pretty``.

    Idempotent: a second call replaces the handler installed by the first. Returns that handler.
    A bad ``level`` is a ``ConfigError``.
    """
    global _installed  # noqa: PLW0603 - one logging set-up per process, replaced on reconfiguration
    numeric_level = parse_level(level)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(PrettyFormatter(redactor) if pretty else JsonFormatter(redactor))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    _installed = handler
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric_level))
    logging.captureWarnings(True)
    return handler
