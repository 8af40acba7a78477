"""Clocks: the system's, and a manual one that tests (and `taskyard.testing`) move by hand."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


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
