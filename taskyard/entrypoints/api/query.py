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
import re
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from uuid import UUID

import falcon

from taskyard.domain.model import JobState
from taskyard.domain.storable import text_problem
from taskyard.domain.submission import TASK_LEN_MAX, is_queue_name
from taskyard.domain.timefmt import EPOCH
from taskyard.entrypoints.api.problems import bad_request
from taskyard.entrypoints.numbers import ascii_int

LIMIT_DEFAULT = 100
LIMIT_MAX = 1000
WINDOW_S_DEFAULT = 3600
WINDOW_S_MIN = 60
WINDOW_S_MAX = 604_800
_MICROSECOND = timedelta(microseconds=1)
_CURSOR = re.compile(r"([0-9]{1,20})\.([0-9a-f]{32})")


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


def integer(
    params: Mapping[str, list[str]], name: str, *, default: int, low: int, high: int
) -> int:
    text = single(params, name)
    if text is None:
        return default
    value = ascii_int(text, signed=False)
    if value is None or not low <= value <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}", field=name)
    return value


def boolean(params: Mapping[str, list[str]], name: str, *, default: bool) -> bool:
    """`true` or `false` (as JSON spells them), `1` or `0`."""
    text = single(params, name)
    if text is None:
        return default
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise bad_request(f"{name} must be true or false", field=name)


def states(params: Mapping[str, list[str]]) -> frozenset[JobState]:
    out: set[JobState] = set()
    for value in params.get("state", ()):
        try:
            out.add(JobState(value))
        except ValueError:
            names = ", ".join(JobState)
            raise bad_request(f"unknown state {value!r} (one of {names})", field="state") from None
    return frozenset(out)


def queues(params: Mapping[str, list[str]]) -> frozenset[str]:
    for value in params.get("queue", ()):
        if not is_queue_name(value):
            raise bad_request(f"{value!r} is not a queue name", field="queue")
    return frozenset(params.get("queue", ()))


def tasks(params: Mapping[str, list[str]]) -> frozenset[str]:
    for value in params.get("task", ()):
        if not 1 <= len(value) <= TASK_LEN_MAX:
            raise bad_request(f"a task name is 1 to {TASK_LEN_MAX} characters", field="task")
        problem = text_problem(value)
        if problem is not None:
            raise bad_request(f"a task name {problem}", field="task")
    return frozenset(params.get("task", ()))


def includes(params: Mapping[str, list[str]], optional: Collection[str]) -> frozenset[str]:
    """The optional fields named by `include` (repeatable, one field a value)."""
    out = set()
    for value in params.get("include", ()):
        if value not in optional:
            names = ", ".join(optional)
            raise bad_request(
                f"include takes {names} (one a value), not {value!r}", field="include"
            )
        out.add(value)
    return frozenset(out)


def encode_cursor(position: tuple[datetime, UUID]) -> str:
    created_at, job_id = position
    micros = (created_at - EPOCH) // _MICROSECOND
    assert micros >= 0, created_at
    text = f"{micros}.{job_id.hex}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position a cursor names; a 400 for anything this API did not make."""
    problem = bad_request("not a cursor this API gave out", field="cursor")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", cursor):
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
