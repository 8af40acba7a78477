"""Clocks: the system's, and a manual one that tests (and `taskyard.testing`) move by hand."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class MonotonicClock:
    """Wall time read once, then advanced by the monotonic clock.

    For a node's own schedule (when to heartbeat, when a handler timed out, when to poll):
    a step of the system clock — NTP, a VM resumed, an operator — neither stalls nor
    rushes it. Never for anything stored: stores keep their own clock.
    """

    def __init__(self) -> None:
        self._wall = datetime.now(UTC)
        self._mono = time.monotonic()

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=time.monotonic() - self._mono)


class ManualClock:
    """A clock that only moves when told to. Thread-safe; it never goes backwards."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        assert self._now.tzinfo is not None, "a clock reads aware UTC datetimes"
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        assert seconds >= 0, "a manual clock never goes backwards"
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, moment: datetime) -> datetime:
        with self._lock:
            assert moment >= self._now, "a manual clock never goes backwards"
            self._now = moment
            return self._now
