"""Waiting for a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

POLL_S = 0.01


def eventually(condition: Callable[[], object], *, timeout_s: float, what: str) -> None:
    """Return as soon as `condition()` is true; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(POLL_S)


def process_gone(pid: int) -> bool:
    """No process has this id any more (it was killed and reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
