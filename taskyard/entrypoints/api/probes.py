"""Bounded probes for `/readyz` and `/metrics`: a request never waits on a dependency
longer than `PROBE_TIMEOUT_S`.

A store that cannot be reached can hold a call for its whole pool timeout (PostgreSQL:
10 s, waiting for a connection) or longer (a peer that vanished mid-query), and a load
balancer asks for readiness every few seconds. So these two routes do not call the store
or the coordinator on the request's thread: a `Probe` makes the call on a helper thread
and the request waits for its answer at most until its deadline, then reports that part
as down ("no answer within 2 s"). One call per probe is in flight at a time; requests that
come meanwhile wait for the same answer. So a dependency that hangs costs one waiting
helper thread per probe, never one per request, and the request threads stay free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")

PROBE_TIMEOUT_S = 2.0
"""How long `/readyz` and `/metrics` wait for the store and the coordinator."""


class NoAnswer(Exception):
    """The probe's call did not return before the deadline (it may still be under way)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"no answer within {timeout_s:g} s")


class Probe(Generic[T]):
    """`call` run on a helper thread, at most one at a time, its answer shared by every
    request that waits for it."""

    def __init__(self, name: str, call: Callable[[], T]) -> None:
        self.name = name
        self._call = call
        self._lock = threading.Lock()
        self._flight: Future[T] | None = None

    def start(self) -> Future[T]:
        """The call under way, or a new one."""
        with self._lock:
            flight = self._flight
            if flight is None:
                flight = self._flight = Future()
                threading.Thread(
                    target=self._fly,
                    args=(flight,),
                    name=f"taskyard-probe-{self.name}",
                    daemon=True,
                ).start()
        return flight

    def _fly(self, flight: Future[T]) -> None:
        try:
            value = self._call()
        except Exception as exc:
            self._land()
            flight.set_exception(exc)
        else:
            self._land()
            flight.set_result(value)

    def _land(self) -> None:
        with self._lock:
            self._flight = None  # the next request asks afresh


class Deadline:
    """`PROBE_TIMEOUT_S` from now, shared by the probes of one request."""

    def __init__(self, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._at = time.monotonic() + timeout_s

    def wait(self, flight: Future[T]) -> T:
        """The call's answer (or its exception); `NoAnswer` once the deadline has passed."""
        try:
            return flight.result(timeout=max(0.0, self._at - time.monotonic()))
        except TimeoutError:
            raise NoAnswer(self.timeout_s) from None


__all__ = ["PROBE_TIMEOUT_S", "Deadline", "NoAnswer", "Probe"]
