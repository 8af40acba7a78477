"""Warn once when a dependency goes away, once when it is back, and back off meanwhile."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import attrs

from taskyard.domain.errors import CoordinatorUnavailable
from taskyard.domain.timefmt import after

log = logging.getLogger("taskyard")

RETRY_S_MIN = 0.05
RETRY_S_MAX = 2.0
REST_S_MAX = 5.0
"""The longest a ring or a campaign rests after failures before it is tried again."""
REGISTER_REST_S_MAX = 30.0
"""The longest a worker's registration rests: it only feeds `GET /v1/workers`."""


@attrs.define(eq=False)
class Health:
    """Warn once when a dependency goes away and once when it is back."""

    name: str
    ok: bool = True
    failures: int = 0
    resting_until: datetime | None = None

    def down(self, error: Exception) -> None:
        self.failures += 1
        if self.ok:
            self.ok = False
            log.warning("%s unavailable: %s", self.name, error)

    def up(self) -> None:
        if not self.ok:
            log.warning("%s is back", self.name)
        self.ok = True
        self.failures = 0
        self.resting_until = None

    def retry_after_s(self) -> float:
        return min(RETRY_S_MAX, RETRY_S_MIN * 2.0 ** min(self.failures, 10))

    def rest(self, now: datetime, *, cap_s: float = REST_S_MAX) -> None:
        """Leave optional calls alone for a while after a failure: 0.5 s, 1 s, 2 s … up to
        `cap_s`. For calls that only speed things up (registering, ringing, campaigning):
        against a coordinator that swallows packets each call waits out its own timeout,
        and must not hold up, tick after tick, the work that does not need it."""
        rest_s = min(cap_s, 0.25 * 2.0 ** min(self.failures, 10))
        self.resting_until = after(now, rest_s)

    def resting(self, now: datetime) -> bool:
        """True while down and resting. Any success on the same `Health` (another thread's
        call, say) ends the rest at once."""
        return not self.ok and self.resting_until is not None and now < self.resting_until


def call_optional(health: Health, now: datetime, call: Callable[[], object]) -> bool:
    """Make a coordinator call that only speeds things up (a ring, an announcement): none
    while `health` rests, and one that fails makes it rest. True when it was answered."""
    if health.resting(now):
        return False
    try:
        call()
    except CoordinatorUnavailable as exc:
        health.down(exc)
        health.rest(now)
        return False
    health.up()
    return True
