"""Properties of the retry policy: bounded, monotone ceilings, deterministic given a seed."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from taskyard.domain.retry import Jitter, RetryPolicy
from tests.strategies import attempt_numbers, retry_policies


@given(retry_policies(), attempt_numbers, st.integers(min_value=0, max_value=2**32))
def test_a_delay_stays_within_its_bounds(policy: RetryPolicy, attempt: int, seed: int) -> None:
    low, high = policy.bounds_s(attempt=attempt)
    delay = policy.delay_s(attempt=attempt, rng=random.Random(seed))
    assert 0 <= low <= delay <= high <= policy.max_s
    assert math.isfinite(delay)


@given(retry_policies(), attempt_numbers)
def test_the_ceiling_never_shrinks_and_never_passes_the_cap(
    policy: RetryPolicy, attempt: int
) -> None:
    assert policy.ceiling_s(attempt=attempt) <= policy.ceiling_s(attempt=attempt + 1)
    assert policy.ceiling_s(attempt=attempt) <= policy.max_s


@given(retry_policies(), attempt_numbers, st.integers(min_value=0, max_value=2**32))
def test_the_same_seed_gives_the_same_delay(policy: RetryPolicy, attempt: int, seed: int) -> None:
    first = policy.delay_s(attempt=attempt, rng=random.Random(seed))
    again = policy.delay_s(attempt=attempt, rng=random.Random(seed))
    assert first == again


def test_the_ceiling_follows_the_formula() -> None:
    policy = RetryPolicy(base_s=0.5, factor=3.0, max_s=100.0, jitter=Jitter.NONE)
    assert [policy.delay_s(attempt=n, rng=random.Random(0)) for n in range(1, 7)] == [
        0.5,
        1.5,
        4.5,
        13.5,
        40.5,
        100.0,
    ]


def test_equal_jitter_keeps_at_least_half_the_ceiling() -> None:
    policy = RetryPolicy(base_s=8.0, factor=2.0, max_s=1000.0, jitter=Jitter.EQUAL)
    rng = random.Random(3)
    delays = [policy.delay_s(attempt=2, rng=rng) for _ in range(200)]
    assert min(delays) >= 8.0 and max(delays) <= 16.0
    assert max(delays) - min(delays) > 4.0, "jitter actually spreads the delays"


def test_a_huge_attempt_number_does_not_overflow() -> None:
    policy = RetryPolicy(base_s=1.0, factor=10.0, max_s=60.0, jitter=Jitter.NONE)
    assert policy.ceiling_s(attempt=100_000) == 60.0
