"""Reading a JSON request body, strictly, within a size limit.

Refusals, in the order they are checked: 415 for a content type other than JSON
(`application/json`, with at most a `charset=utf-8` parameter), 413 for a body over the
limit (by `Content-Length`, and again while reading a chunked body, which has none), 400 for an
empty body, bytes that are not UTF-8, malformed JSON, a duplicate key, `NaN`/`Infinity`,
nesting too deep to read, or (with `object_required`) a JSON value that is not an object.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import falcon

from taskyard.entrypoints.api.problems import (
    bad_request,
    malformed_json,
    too_large,
    unsupported_media_type,
)

MiB = 1024 * 1024
BODY_BYTES_MAX = 1 * MiB
BATCH_BODY_BYTES_MAX = 16 * MiB


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media, *params = (part.strip() for part in content_type.split(";"))
    if media.lower() != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return False
    return True


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A `\\uD800`-`\\uDFFF` escape: half of a UTF-16 pair, which must come with its other half."""


def _lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json(raw: bytes) -> Any:
    """Parse a request body; raises `Problem` (400) for anything that is not strict JSON."""
    if not raw.strip():
        raise malformed_json("the body is empty: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed_json("the body is not UTF-8") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_float=_finite_float,
        )
    except _DuplicateKey as exc:
        raise malformed_json(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise malformed_json(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise malformed_json(str(exc)) from None
    except RecursionError:
        raise malformed_json("the JSON is nested too deeply") from None
    # Pairs decode to one character; half a pair would be stored and then fail every
    # answer that carries it (it cannot be written as UTF-8). Checked only when the text
    # has such an escape at all.
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(value):
        raise malformed_json("a string holds half of a UTF-16 surrogate pair (\\uD800-\\uDFFF)")
    return value


def read_json(req: falcon.Request, *, limit_bytes: int = BODY_BYTES_MAX) -> Any:
    """The body as parsed JSON (any value)."""
    if not is_json(req.content_type):
        raise unsupported_media_type(req.content_type)
    length = req.content_length
    if length is not None and length > limit_bytes:
        raise too_large(limit_bytes)
    if length is None and req.get_header("Transfer-Encoding") is not None:
        # Chunked: the server (gunicorn) decodes it and ends the stream at its end.
        raw = _read_at_most(req.stream, limit_bytes + 1)
    else:
        raw = req.bounded_stream.read(limit_bytes + 1)
    if len(raw) > limit_bytes:
        raise too_large(limit_bytes)
    return parse_json(raw)


def _read_at_most(stream: Any, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(min(left, 64 * 1024))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_object(req: falcon.Request, *, limit_bytes: int = BODY_BYTES_MAX) -> dict[str, Any]:
    """The body, which must be a JSON object (400 otherwise)."""
    data = read_json(req, limit_bytes=limit_bytes)
    if not isinstance(data, dict):
        raise bad_request(f"the body must be a JSON object, not {_json_kind(data)}")
    return data


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"
