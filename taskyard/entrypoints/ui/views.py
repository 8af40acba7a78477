"""What the dashboard's pages show, read through the ports, and the short cache that keeps
many open browsers from multiplying the store's work.

Every read is the store's own and bounded whatever the table's size: counts by state and
queue from the store's counters (`JobStore.queues`), the dead letters grouped by the store
(`dead_groups`, `dead_ids`), a job's dependents and a key's job looked up by index
(`dependents`, `find_by_key`), throughput and failures over time in one pass over the
last hour's finished jobs and attempts (`outcome_series`, computed in the background:
`TtlCache.peek`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar
from uuid import UUID

import attrs

from taskyard.domain.model import DeadGroup, Job, JobState, OutcomeBucket, QueueInfo
from taskyard.domain.ports import JobStore

T = TypeVar("T")
log = logging.getLogger("taskyard.api")

CACHE_S = 5.0
"""How long the queue counts and dead-letter groups are fresh: every browser polling within
it costs nothing. After it, they are recomputed in the background while still served."""
SERIES_CACHE_S = 60.0
"""The outcome chart's buckets are 10 minutes wide: a minute-old chart loses nothing."""
SERIES_BUCKETS = 6
SERIES_BUCKET_S = 600
COUNT_SCAN_MAX = 2000
"""A bulk action's confirmation looks at most this many running jobs one by one
(`management.count_bulk`; the other states are counted whole)."""
GROUP_RETRY_MAX = 1000
"""A dead-letter group's retry takes its newest this many jobs."""
DEPENDENTS_SHOWN_MAX = 1000


class TtlCache(Generic[T]):
    """One value computed by the store, shared by every request of this process.

    Fresh for `ttl_s`: served as it is. Then, for `stale_s` more, still served at once while
    one background thread computes the next (only while someone asks: an idle dashboard
    costs nothing). Older, missing, or cleared by `clear()`: computed in the request, by one
    thread at a time (the others wait for it rather than ask the store too). A clock that
    steps back ends the value's life rather than stretching it. A failed background
    computation keeps the old value (until it is too old) and is logged.
    """

    def __init__(
        self,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        stale_s: float | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.stale_s = 10 * ttl_s if stale_s is None else stale_s
        self._clock = clock
        self._lock = threading.Lock()
        self._computing = threading.Lock()
        self._value: tuple[float, T] | None = None
        self._refreshing = False
        self._idle = threading.Event()
        self._idle.set()

    def get(self, compute: Callable[[], T]) -> T:
        served = self._served(compute)
        if served is not None:
            return served[0]
        with self._computing:
            with self._lock:
                now = self._clock()
                held = self._value
                if held is not None and held[0] <= now < held[0] + self.ttl_s:
                    return held[1]  # another request computed it meanwhile
            return self._compute(compute)

    def peek(self, compute: Callable[[], T]) -> T | None:
        """Like `get`, but never computes in the request: with nothing usable cached, a
        background thread computes it and this answers None (for a part of a page that
        may come a refresh later rather than hold the whole page up)."""
        held = self._served(compute, when_missing=True)
        return held[0] if held is not None else None

    def _served(self, compute: Callable[[], T], *, when_missing: bool = False) -> tuple[T] | None:
        """The value when it may be served now (starting a refresh when it is stale, or when
        it is missing and `when_missing`), else None."""
        with self._lock:
            now = self._clock()
            held = self._value
            usable = held is not None and held[0] <= now < held[0] + self.ttl_s + self.stale_s
            stale = held is None or not held[0] <= now < held[0] + self.ttl_s
            if stale and (usable or when_missing) and not self._refreshing:
                self._refreshing = True
                self._idle.clear()
                threading.Thread(
                    target=self._refresh, args=(compute,), name="taskyard-ui-cache", daemon=True
                ).start()
            if usable and held is not None:
                return (held[1],)
            return None

    def _compute(self, compute: Callable[[], T]) -> T:
        started = self._clock()
        value = compute()
        with self._lock:
            self._value = (started, value)
        return value

    def _refresh(self, compute: Callable[[], T]) -> None:
        try:
            with self._computing:
                self._compute(compute)
        except Exception as exc:  # the store is down: keep what we have until it is too old
            log.warning("dashboard: refreshing a cached value failed: %s", exc)
        finally:
            with self._lock:
                self._refreshing = False
                self._idle.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no background computation runs (tests and the page benchmark)."""
        return self._idle.wait(timeout_s)

    def clear(self) -> None:
        with self._lock:
            self._value = None


Bucket = OutcomeBucket


@attrs.frozen(kw_only=True)
class Found:
    jobs: tuple[Job, ...]
    complete: bool
    """False when there were more than were fetched."""


NO_ERROR = "(none)"
"""How a dead job without a recorded error is grouped and named."""


def error_type_of(group: DeadGroup) -> str:
    return group.error_type if group.error_type is not None else NO_ERROR


class Views:
    """The dashboard's reads of one store, with the short caches."""

    def __init__(self, store: JobStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._queues: TtlCache[list[QueueInfo]] = TtlCache(CACHE_S, clock)
        self._series: TtlCache[list[Bucket]] = TtlCache(SERIES_CACHE_S, clock)
        self._dead: TtlCache[list[DeadGroup]] = TtlCache(CACHE_S, clock)

    def changed(self) -> None:
        """An action of this process changed jobs: its next page shows it at once."""
        self._queues.clear()
        self._series.clear()
        self._dead.clear()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until none of the caches computes in the background."""
        return all(cache.wait_idle(timeout_s) for cache in (self._queues, self._series, self._dead))

    def queues(self) -> list[QueueInfo]:
        return self._queues.get(self.store.queues)

    def state_counts(self) -> dict[JobState, int]:
        totals = dict.fromkeys(JobState, 0)
        for info in self.queues():
            for state, count in info.counts.items():
                totals[state] += count
        return totals

    def outcome_series(self) -> list[Bucket] | None:
        """The chart's buckets, or None while they are first computed (in the background:
        from existing calls they take seconds on a large table)."""
        return self._series.peek(self._compute_series)

    def _compute_series(self) -> list[Bucket]:
        return self.store.outcome_series(bucket_s=SERIES_BUCKET_S, buckets=SERIES_BUCKETS)

    def dead_groups(self) -> list[DeadGroup]:
        """Groups by (task, error type), largest first."""
        return self._dead.get(self.store.dead_groups)

    def dead_group(self, task: str, error_type: str) -> list[UUID]:
        """The newest `GROUP_RETRY_MAX` ids of one group as the store has them now (not
        cached: they are acted on)."""
        return self.store.dead_ids(
            task=task,
            error_type=None if error_type == NO_ERROR else error_type,
            limit=GROUP_RETRY_MAX,
        )

    def dependents(self, job: Job) -> Found:
        found = self.store.dependents(job.id, limit=DEPENDENTS_SHOWN_MAX + 1)
        return Found(
            jobs=tuple(found[:DEPENDENTS_SHOWN_MAX]), complete=len(found) <= DEPENDENTS_SHOWN_MAX
        )

    def find_by_key(self, key: str) -> Job | None:
        return self.store.find_by_key(key)
