"""The event loop: a heap of `(at, seq, owner, incarnation, event)` on the true clock.

Events fire in time order, ties in the order they were scheduled. An event that belongs
to a node is dropped when the node has crashed since it was scheduled (its incarnation
moved on) and held back while the node is paused. Every line of the trace is written
through `note`, stamped with the true time.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Protocol

from taskyard.simulation.clocks import TrueClock
from taskyard.simulation.trace import Trace

Event = Callable[[], None]


class Owner(Protocol):
    """A node, as the loop sees it."""

    incarnation: int
    paused: bool
    deferred: list[Event]

    @property
    def label(self) -> str: ...


HeapItem = tuple[float, int, Owner | None, int, Event]


class EventLoop:
    def __init__(self, clock: TrueClock, trace: Trace, *, events_max: int) -> None:
        self.clock = clock
        self.trace = trace
        self.events_max = events_max
        self.events = 0
        self.current = "world"
        """Who runs the event that fires now (a node's label, or `world`)."""
        self.cut_short: str | None = None
        self._heap: list[HeapItem] = []
        self._seq = 0

    @property
    def now(self) -> float:
        return self.clock.t

    def at(self, t: float, event: Event, owner: Owner | None = None) -> None:
        assert t >= self.clock.t, (t, self.clock.t)
        self._seq += 1
        inc = owner.incarnation if owner is not None else 0
        heapq.heappush(self._heap, (t, self._seq, owner, inc, event))

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> bool:
        """Fire events up to `t_end`; True when `stop()` became true."""
        heap = self._heap
        events_max = self.events_max
        while heap and heap[0][0] <= t_end:
            at, _, owner, inc, event = heapq.heappop(heap)
            self.clock.move_to(at)
            if owner is not None:
                if inc != owner.incarnation:
                    continue
                if owner.paused:
                    owner.deferred.append(event)
                    continue
                self.current = owner.label
            else:
                self.current = "world"
            event()
            self.events += 1
            if self.events >= events_max:
                self.cut_short = f"gave up after {events_max} events"
                return False
            if stop is not None and stop():
                return True
        if t_end > self.clock.t and t_end != math.inf:
            self.clock.move_to(t_end)
        return False

    def note(self, who: str, what: str) -> None:
        self.trace.add(self.clock.t, who, what)
