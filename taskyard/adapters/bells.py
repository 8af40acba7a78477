"""Doorbell rings and finished announcements sent from a thread of their own.

Both are best effort (the store is the truth: a worker polls, a waiter looks at the store
now and then), and both are sent only after the write they announce has committed. Sent
on the caller's thread they cost it a round trip to Redis each: a third of an
`App.enqueue` one job at a time, and a seventh of a worker's control thread during a
drain (py-spy, docs/performance.md). `Bells` takes them instead: the caller adds its
queues or job ids under a lock and goes on; one thread sends what has gathered meanwhile
in one call each (rings of the same queue merge), so a burst of enqueues costs one ring.
Order is kept where it matters: what is added after a commit is sent after it.

`close` sends what is pending (within a bound) before the connections go, and so does the
interpreter's exit for a coordinator never closed. A forked child starts a thread of its
own on its first bell (`os.register_at_fork`), and leaves what was pending to its parent.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence

from taskyard.domain.errors import CoordinatorUnavailable

log = logging.getLogger("taskyard.bells")

CLOSE_WAIT_S = 1.0
"""How long `close` waits for pending bells to go out."""


class Bells:
    def __init__(
        self,
        *,
        ring: Callable[[Sequence[str]], None],
        announce: Callable[[Sequence[str]], None],
    ) -> None:
        self._send_ring = ring
        self._send_announce = announce
        self._closed = False
        self._fresh()
        self.sent_rings = 0
        self.failures = 0
        _EVERY.add(self)

    def _fresh(self) -> None:
        """Nothing pending and no thread: at start, and in a forked child (whose copy of the
        lock may have been held by its parent's thread at the fork, and whose parent sends
        what was pending)."""
        self._lock = threading.Condition()
        self._queues: dict[str, None] = {}
        """Queues to ring, in the order first asked (a dict as an ordered set)."""
        self._finished: list[str] = []
        self._sending = False
        self._thread: threading.Thread | None = None

    def ring(self, queues: Sequence[str]) -> None:
        with self._lock:
            for queue in queues:
                self._queues[queue] = None
            self._wake()

    def announce(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            self._finished.extend(job_ids)
            self._wake()

    def _wake(self) -> None:
        if self._closed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="taskyard-bells", daemon=True)
            self._thread.start()
            atexit.register(_flush_at_exit, weakref.ref(self))
        self._lock.notify_all()

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not (self._queues or self._finished) and not self._closed:
                    self._lock.wait()
                if not (self._queues or self._finished):
                    return  # closed, nothing left
                queues, self._queues = list(self._queues), {}
                finished, self._finished = self._finished, []
                self._sending = True
            try:
                self._send(queues, finished)
            finally:
                with self._lock:
                    self._sending = False
                    self._lock.notify_all()

    def _send(self, queues: list[str], finished: list[str]) -> None:
        for what, send, items in (
            ("ring", self._send_ring, queues),
            ("announce", self._send_announce, finished),
        ):
            if not items:
                continue
            try:
                send(items)
                if what == "ring":
                    self.sent_rings += 1
            except CoordinatorUnavailable as exc:
                # As a ring on the caller's thread would have: lost, and the store polled.
                self.failures += 1
                log.debug("a %s was lost: %s", what, exc)
            except Exception:
                self.failures += 1
                log.exception("a %s failed", what)

    def flush(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Wait until everything asked so far is sent (or `timeout_s`): True when it is."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._queues or self._finished or self._sending:
                if self._thread is None:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def close(self) -> None:
        """Send what is pending (up to `CLOSE_WAIT_S`), then stop the thread."""
        self.flush()
        with self._lock:
            self._closed = True
            self._lock.notify_all()


_EVERY: weakref.WeakSet[Bells] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for bells in list(_EVERY):
        bells._fresh()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _flush_at_exit(ref: weakref.ref[Bells]) -> None:
    bells = ref()
    if bells is not None:
        bells.flush()
