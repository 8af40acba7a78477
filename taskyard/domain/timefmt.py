"""Times on the wire: RFC 3339, always UTC with milliseconds and ``Z`` on output.

>>> from datetime import datetime, timezone
>>> format_time(datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=timezone.utc))
'2026-11-22T10:00:00.123Z'
>>> format_time(datetime(999, 1, 2, tzinfo=timezone.utc))
'0999-01-02T00:00:00.000Z'
>>> parse_time("2026-11-22T11:00:00+01:00") == datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
True
>>> parse_time("2026-11-22T10:00:00")
Traceback (most recent call last):
...
ValueError: a time needs an offset (Z or +hh:mm)
>>> parse_time("2026-11-22T10:00:00.1234567891Z").microsecond  # any number of digits
123456
>>> parse_time("0001-01-01T00:00:00+01:00")
Traceback (most recent call last):
...
ValueError: not a valid time: out of range once in UTC
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
"""Matched as a whole, in ASCII digits only (`\\d` would take any script's digits)."""


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-11-22T10:00:00.123Z``."""
    assert moment.tzinfo is not None, "naive datetimes never reach the wire"
    utc = moment.astimezone(UTC)
    # Not strftime: its %Y writes the year 999 as "999", which is not RFC 3339.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 with any offset into an aware UTC datetime; refuse a time without one."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)")
    if match.group(2) is None:
        raise ValueError("a time needs an offset (Z or +hh:mm)")
    normalized = text.replace("z", "Z").replace("t", "T")
    if normalized.endswith("Z"):
        normalized = normalized[:-1] + "+00:00"
    fraction = match.group(1)
    if fraction is not None and len(fraction) > 7:
        normalized = normalized.replace(fraction, fraction[:7], 1)
    try:
        parsed = datetime.fromisoformat(normalized)
        return parsed.astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid time: {exc}") from None
    except OverflowError:
        raise ValueError("not a valid time: out of range once in UTC") from None


def seconds_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()


def after(moment: datetime, seconds: float) -> datetime:
    return moment + timedelta(seconds=seconds)


def to_epoch_s(moment: datetime) -> float:
    return (moment - EPOCH).total_seconds()


def from_epoch_s(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)
