"""The retry policy: exponential backoff with jitter, deterministic given a random source.

The delay before attempt ``n + 1``, after attempt ``n`` failed, is::

    ceiling(n) = min(max_s, base_s * factor ** (n - 1))
    none:   delay = ceiling
    full:   delay = uniform(0, ceiling)
    equal:  delay = ceiling / 2 + uniform(0, ceiling / 2)

>>> import random
>>> policy = RetryPolicy(base_s=1.0, factor=2.0, max_s=300.0, jitter=Jitter.NONE)
>>> [policy.delay_s(attempt=n, rng=random.Random(0)) for n in (1, 2, 3, 10)]
[1.0, 2.0, 4.0, 300.0]
>>> full = RetryPolicy(jitter=Jitter.FULL)
>>> 0.0 <= full.delay_s(attempt=3, rng=random.Random(7)) <= 4.0
True
"""

from __future__ import annotations

import enum
import math
from typing import Protocol

import attrs


class RandomSource(Protocol):
    """What the retry policy needs of a random source (`random.Random` fits)."""

    def random(self) -> float: ...


class Jitter(enum.StrEnum):
    NONE = "none"
    FULL = "full"
    EQUAL = "equal"


BASE_S_DEFAULT = 1.0
FACTOR_DEFAULT = 2.0
MAX_S_DEFAULT = 300.0


@attrs.frozen(kw_only=True)
class RetryPolicy:
    base_s: float = BASE_S_DEFAULT
    factor: float = FACTOR_DEFAULT
    max_s: float = MAX_S_DEFAULT
    jitter: Jitter = Jitter.FULL

    def __attrs_post_init__(self) -> None:
        assert self.base_s > 0, self.base_s
        assert self.factor >= 1, self.factor
        assert self.max_s >= self.base_s, (self.max_s, self.base_s)

    def ceiling_s(self, *, attempt: int) -> float:
        """The delay without jitter after attempt `attempt` (1-based) failed."""
        assert attempt >= 1, attempt
        exponent = attempt - 1
        if self.factor == 1 or exponent == 0:
            return min(self.max_s, self.base_s)
        # Decide in log space whether the cap is reached, so a large attempt number
        # (manual retries keep counting) never overflows a float; `max_s / base_s` itself
        # may overflow for a tiny base, so the logs are taken apart.
        if exponent * math.log(self.factor) >= math.log(self.max_s) - math.log(self.base_s):
            return self.max_s
        try:
            grown = self.base_s * self.factor**exponent
        except OverflowError:  # a tiny base: the power overflows, the product does not
            grown = math.exp(math.log(self.base_s) + exponent * math.log(self.factor))
        return min(self.max_s, grown)

    def delay_s(self, *, attempt: int, rng: RandomSource) -> float:
        """The delay before the next attempt, after attempt `attempt` failed."""
        ceiling = self.ceiling_s(attempt=attempt)
        if self.jitter is Jitter.NONE:
            return ceiling
        if self.jitter is Jitter.FULL:
            return ceiling * rng.random()
        half = ceiling / 2
        return half + half * rng.random()

    def bounds_s(self, *, attempt: int) -> tuple[float, float]:
        """The closed interval every `delay_s(attempt=...)` falls in."""
        ceiling = self.ceiling_s(attempt=attempt)
        if self.jitter is Jitter.NONE:
            return (ceiling, ceiling)
        if self.jitter is Jitter.FULL:
            return (0.0, ceiling)
        return (ceiling / 2, ceiling)

    def to_json(self) -> dict[str, object]:
        return {
            "base_seconds": self.base_s,
            "factor": self.factor,
            "max_seconds": self.max_s,
            "jitter": self.jitter.value,
        }
