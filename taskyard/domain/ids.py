"""Job ids: UUID version 7 (RFC 9562), time-ordered.

Made from an injected clock reading and random source, never from the host.

Python 3.11 has no ``uuid.uuid7``; the layout is short enough to build here:
48 bits of Unix milliseconds, the version nibble 7, 12 random bits, the variant
``10``, 62 random bits.

>>> import random
>>> from datetime import datetime, timezone
>>> job_id = uuid7(datetime(2026, 11, 22, tzinfo=timezone.utc), random.Random(1))
>>> job_id.version
7
>>> uuid7_time_ms(job_id) == int(datetime(2026, 11, 22, tzinfo=timezone.utc).timestamp() * 1000)
True
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from taskyard.domain.timefmt import to_epoch_s


class BitSource(Protocol):
    def getrandbits(self, k: int, /) -> int: ...


def uuid7(now: datetime, rng: BitSource) -> UUID:
    unix_ms = int(to_epoch_s(now) * 1000)
    assert 0 <= unix_ms < (1 << 48), unix_ms
    rand_a = rng.getrandbits(12)
    rand_b = rng.getrandbits(62)
    value = (unix_ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return UUID(int=value)


def uuid7_time_ms(job_id: UUID) -> int:
    return job_id.int >> 80


def parse_job_id(text: str) -> UUID | None:
    """The UUID in canonical text, or None for anything else.

    A malformed id is simply not found."""
    if len(text) != 36:
        return None
    try:
        parsed = UUID(text)
    except ValueError:
        return None
    return parsed if str(parsed) == text.lower() else None
