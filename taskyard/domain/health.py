"""Warn once when a dependency goes away, once when it is back, and back off meanwhile."""

from __future__ import annotations

import logging

import attrs

log = logging.getLogger("taskyard")

RETRY_S_MIN = 0.05
RETRY_S_MAX = 2.0


@attrs.define(eq=False)
class Health:
    """Warn once when a dependency goes away and once when it is back."""

    name: str
    ok: bool = True
    failures: int = 0

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

    def retry_after_s(self) -> float:
        return min(RETRY_S_MAX, RETRY_S_MIN * 2.0 ** min(self.failures, 10))
