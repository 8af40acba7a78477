"""Virtual time: the true clock (the store's, and the event loop's) and each node's own
clock, which may be skewed, drift, and jump.

True time is a float of seconds since the start of the run; `EPOCH` is its zero as a
datetime. Only the event loop moves it, and only forward.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskyard.domain.timefmt import seconds_between

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def at_s(moment: datetime) -> float:
    """A datetime as seconds since `EPOCH` (how the trace prints times)."""
    return seconds_between(EPOCH, moment)


class TrueClock:
    """The time that really passes. The store reads it (it is the time authority)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    def move_to(self, t: float) -> None:
        assert t >= self.t, f"true time never goes back ({t} < {self.t})"
        self.t = t


class NodeClock:
    """A node's wall clock: `offset_s` ahead of true time at `anchor_t`, then running at
    `rate` true seconds per local second (rate 1.02 runs 2 % fast). A step (`jump`) moves
    it at once, forward or back, as an NTP correction would."""

    def __init__(self, true: TrueClock, *, offset_s: float = 0.0, rate: float = 1.0) -> None:
        assert rate > 0, rate
        self._true = true
        self._anchor_t = true.t
        self._anchor_local = true.t + offset_s
        self.rate = rate

    def local_s(self) -> float:
        return self._anchor_local + (self._true.t - self._anchor_t) * self.rate

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.local_s())

    @property
    def offset_s(self) -> float:
        return self.local_s() - self._true.t

    def _reanchor(self) -> None:
        self._anchor_local = self.local_s()
        self._anchor_t = self._true.t

    def jump(self, seconds: float) -> None:
        self._reanchor()
        self._anchor_local += seconds

    def set_rate(self, rate: float) -> None:
        assert rate > 0, rate
        self._reanchor()
        self.rate = rate

    def true_delay_s(self, until: datetime) -> float:
        """How much true time passes while this clock moves from now to `until`: what a
        process sleeping until `until` by this clock really waits."""
        return max(0.0, seconds_between(self.now(), until)) / self.rate
