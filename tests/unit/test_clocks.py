"""Clocks: the monotonic one ignores steps of the system clock; the manual one never goes back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from taskyard.adapters import clock as clocks


def test_the_monotonic_clock_ignores_a_step_of_the_system_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node_clock = clocks.MonotonicClock()
    before = node_clock.now()

    class SteppedBack(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(time.time() - 600, tz=UTC)

    monkeypatch.setattr(clocks, "datetime", SteppedBack)
    after = node_clock.now()
    assert after >= before
    assert after - before < timedelta(seconds=5)


def test_the_monotonic_clock_starts_at_wall_time_and_advances() -> None:
    node_clock = clocks.MonotonicClock()
    first = node_clock.now()
    assert abs((first - datetime.now(UTC)).total_seconds()) < 1
    deadline = time.monotonic() + 2
    while node_clock.now() == first and time.monotonic() < deadline:
        pass
    assert node_clock.now() > first


def test_the_manual_clock_only_moves_forward() -> None:
    manual = clocks.ManualClock()
    start = manual.now()
    assert manual.advance(5) == start + timedelta(seconds=5)
    with pytest.raises(AssertionError):
        manual.advance(-1)
    with pytest.raises(AssertionError):
        manual.set(start)
