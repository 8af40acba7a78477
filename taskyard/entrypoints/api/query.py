"""Query parameters (strict: an unknown or malformed one is a 400 naming it) and the
opaque listing cursor.

The cursor is the keyset position `(created_at, id)` of the last job of a page, exact to
the microsecond, in URL-safe base64:

>>> from datetime import datetime, timezone
>>> from uuid import UUID
>>> at = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=timezone.utc)
>>> job_id = UUID("0190f3c4-1a2b-7c3d-8e4f-0123456789ab")
>>> decode_cursor(encode_cursor((at, job_id))) == (at, job_id)
True
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import falcon

from taskyard.domain import contract
from taskyard.domain.model import JobState
from taskyard.domain.schema import ABSENT, INVALID, Check, Integer, Param, quoted
from taskyard.domain.timefmt import EPOCH
from taskyard.entrypoints.api.problems import bad_request
from taskyard.entrypoints.numbers import ascii_int

_MICROSECOND = timedelta(microseconds=1)
_CURSOR = re.compile(r"([0-9]{1,20})\.([0-9a-f]{32})")
_CURSOR_TEXT = re.compile(contract.CURSOR.pattern or "")


def params_of(req: falcon.Request, allowed: Collection[str]) -> Mapping[str, list[str]]:
    """Every query parameter as a list of its values; an unknown name is a 400."""
    out: dict[str, list[str]] = {}
    for name, value in req.params.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise bad_request(f"unknown query parameter {name!r} (known: {known})", field=name)
        out[name] = list(value) if isinstance(value, list) else [value]
    return out


def single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(f"{name} may be given once", field=name)
    return values[0]


@functools.cache
def _check(param: Param) -> Check:
    return param.kind.compile()


def _read(param: Param, text: str, *, shown: str = "") -> Any:
    """`text` as the parameter's kind reads it (integers in ASCII digits only); a 400
    naming the parameter, with the declared rule, when it does not fit."""
    raw: Any = text
    if isinstance(param.kind, Integer):
        number = ascii_int(text, signed=False)
        raw = text if number is None else number
    errors: list[Any] = []
    value = _check(param)(raw, "", param.name, errors)
    if value is INVALID:
        raise bad_request(f"{param.name} {shown}{errors[0].message}", field=param.name)
    return value


def value(params: Mapping[str, list[str]], param: Param) -> Any:
    """A parameter given at most once: its value, or its declared default (or None)."""
    text = single(params, param.name)
    if text is None:
        return None if param.default is ABSENT else param.default
    return _read(param, text)


def values(params: Mapping[str, list[str]], param: Param) -> frozenset[Any]:
    """A parameter that may repeat (any of its values): each value checked."""
    return frozenset(
        _read(param, text, shown=quoted(text) + " ") for text in params.get(param.name, ())
    )


def flag(params: Mapping[str, list[str]], param: Param) -> bool:
    """`true` or `false` (as JSON spells them), `1` or `0`."""
    return value(params, param) in ("true", "1")


def states(params: Mapping[str, list[str]], param: Param) -> frozenset[JobState]:
    return frozenset(JobState(state) for state in values(params, param))


def encode_cursor(position: tuple[datetime, UUID]) -> str:
    created_at, job_id = position
    micros = (created_at - EPOCH) // _MICROSECOND
    assert micros >= 0, created_at
    text = f"{micros}.{job_id.hex}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position a cursor names; a 400 for anything this API did not make."""
    problem = bad_request("not " + contract.CURSOR.says(), field="cursor")
    if not _CURSOR_TEXT.fullmatch(cursor):
        raise problem
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise problem from None
    match = _CURSOR.fullmatch(text)
    if match is None:
        raise problem
    try:
        created_at = EPOCH + int(match.group(1)) * _MICROSECOND
    except OverflowError:
        raise problem from None
    return created_at, UUID(hex=match.group(2))
