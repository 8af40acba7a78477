"""Logging for every taskyard process: `text` for people, `json` for machines.

With `--log-format json` each line is one JSON object:

    {"time": "2026-11-22T10:00:00.123Z", "level": "info", "logger": "taskyard.api",
     "message": "request", "pid": 4242, "request_id": "...", "job_id": "...", ...}

Fields about the work in hand (`request_id`, `job_id`, `attempt`, `worker_id`, ...) come
from two places: the `extra=` of a log call, and the *log context*, a context variable
that a process sets around a piece of work so that every line written meanwhile, by any
logger, carries them:

    with log_context(request_id=rid):
        ...                     # every line logged here has "request_id": rid
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from taskyard.domain.timefmt import format_time

LOG_FORMATS = ("text", "json")

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "taskyard_log_context", default=MappingProxyType({})
)

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
"""Attributes every LogRecord has: anything else on a record came from `extra=` or the
log context."""


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged inside the block (nested blocks add up)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Like `log_context`, for code that cannot use a `with` block (a Falcon middleware's
    request and response hooks); undo with `unbind_log_context(token)`."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind_log_context(token: contextvars.Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


def current_log_context() -> Mapping[str, Any]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the log context onto each record (in the thread that logs it); a field given
    with `extra=` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard ones, in a stable order."""
    return {
        key: value
        for key, value in sorted(record.__dict__.items())
        if key not in _STANDARD and not key.startswith("_")
    }


_second_text: list[tuple[int, str]] = [(-1, "")]
"""The last whole second a record was stamped with, written up to its seconds: every
record of that second reuses it and writes only its milliseconds (a worker logs a line
per job; the full conversion was a tenth of its CPU at thousands of jobs a second)."""


def _time(record: logging.LogRecord) -> str:
    created = record.created
    second = int(created)
    micros = round((created - second) * 1_000_000)
    if second < 0 or micros >= 1_000_000:
        return format_time(datetime.fromtimestamp(created, UTC))
    cached_second, text = _second_text[0]
    if cached_second != second:
        text = format_time(datetime.fromtimestamp(second, UTC))[: -len(".000Z")]
        _second_text[0] = (second, text)
    return f"{text}.{micros // 1000:03d}Z"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, then every field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record_fields(record).items():
            out.setdefault(key, _jsonable(value))
        if record.exc_info:
            out["error"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["error"] = record.exc_text
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-11-22T10:00:00.123Z INFO taskyard.api: message key=value ...`

    A record is one line that starts with its time; only a traceback adds lines, each
    indented. Logged values cannot forge a line: control characters (C0, DEL, C1, and the
    Unicode line and paragraph separators) in the message are escaped (`\\n`, `\\x00`,
    `\\u2028`), and a field value with any of them, a space or a quote is written as a
    JSON string."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in record_fields(record).items())
        message = escape_controls(record.getMessage())
        line = f"{_time(record)} {record.levelname} {record.name}: {message}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line += "".join(f"\n  {part}" for part in _traceback_lines(record.exc_info))
        return line


def _traceback_lines(exc_info: Any) -> list[str]:
    """A traceback's lines, escaped. Its frames and headers keep their line breaks; an
    exception's own text (`ValueError: <message>`) stays on one line whatever it holds."""
    lines: list[str] = []
    for chunk in traceback.format_exception(*exc_info):
        text = chunk.rstrip("\n")
        structural = chunk.startswith(("  File ", "Traceback ", "\n"))
        lines.extend(escape_controls(part) for part in (text.split("\n") if structural else [text]))
    return lines


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    r"""`text` with its control characters written as escapes, so that it stays on one line
    and cannot move a terminal's cursor.

    >>> print(escape_controls("a\r\nb\x00c\x85d\u2028e\tf"))
    a\r\nb\x00c\x85d\u2028e\tf
    """
    return _CONTROL.sub(_escaped, text)


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(_jsonable(value))
    plain = text and text.isprintable() and " " not in text and '"' not in text
    return text if plain else json.dumps(text)


def make_formatter(log_format: str) -> logging.Formatter:
    assert log_format in LOG_FORMATS, log_format
    return JsonFormatter() if log_format == "json" else TextFormatter()


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(
    *, log_format: str = "text", level: str = "info", stream: IO[str] | None = None
) -> logging.Handler:
    """Send every logger's lines to `stream` (stderr) in `log_format`, at `level` and above.
    Replaces the handlers of the root logger; returns the one it installs."""
    handler = make_handler(log_format, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "bind_log_context",
    "configure_logging",
    "current_log_context",
    "log_context",
    "make_formatter",
    "make_handler",
    "unbind_log_context",
]
