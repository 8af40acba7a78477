"""What the dashboard's pages show, read through the ports, and the short cache that keeps
many open browsers from multiplying the store's work.

Some of it the ports do not give directly; until the store has a method for each, it is
computed here from existing calls, always bounded (each name is the store method meant to
replace it; `docs/operations.md`, "The dashboard"):

* `outcome_series`: throughput and failures over time, from `stats()` over growing
  windows (`SERIES_BUCKETS` calls, each a window `SERIES_BUCKET_S` longer).
* `dead_groups`: dead jobs grouped by task and error type, from the newest
  `DEAD_SCAN_MAX` dead jobs.
* `dependents`: the jobs that depend on a job, from the newest `DEPENDENTS_SCAN_MAX`
  jobs created after it (a dependent is always created after what it depends on).
* `find_by_key`: a job by its idempotency key, among the newest `KEY_SCAN_MAX` jobs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

import attrs

from taskyard.domain.model import Job, JobState, QueueInfo
from taskyard.domain.ports import JobFilter, JobQuery, JobStore
from taskyard.domain.timefmt import after

T = TypeVar("T")
log = logging.getLogger("taskyard.api")

CACHE_S = 5.0
"""How long the queue counts and dead-letter groups are fresh: every browser polling within
it costs nothing. After it, they are recomputed in the background while still served."""
SERIES_CACHE_S = 60.0
"""The outcome chart's buckets are 10 minutes wide: a minute-old chart loses nothing."""
SERIES_BUCKETS = 6
SERIES_BUCKET_S = 600
DEAD_SCAN_MAX = 1000
COUNT_SCAN_MAX = 2000
"""A bulk action's confirmation counts (`management.count_bulk`) at most this many jobs."""
DEPENDENTS_SCAN_MAX = 1000
KEY_SCAN_MAX = 1000
_PAGE = 1000


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


@attrs.frozen(kw_only=True)
class Bucket:
    start: datetime
    succeeded: int
    dead: int
    failed_attempts: int


@attrs.frozen(kw_only=True)
class DeadGroup:
    task: str
    error_type: str
    count: int
    newest: Job
    job_ids: tuple[UUID, ...]


@attrs.frozen(kw_only=True)
class Found:
    jobs: tuple[Job, ...]
    complete: bool
    """False when the scan stopped at its bound before looking at every candidate."""


def error_type_of(job: Job) -> str:
    return job.last_error.type if job.last_error is not None else "(none)"


def _scan(store: JobStore, job_filter: JobFilter, limit: int) -> Iterator[Job]:
    """At most `limit` jobs matching the filter, newest first."""
    cursor = None
    seen = 0
    while seen < limit:
        page = store.list_jobs(
            JobQuery(filter=job_filter, limit=min(_PAGE, limit - seen), cursor=cursor)
        )
        yield from page.jobs
        seen += len(page.jobs)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class Views:
    """The dashboard's reads of one store, with the short caches."""

    def __init__(self, store: JobStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._queues: TtlCache[list[QueueInfo]] = TtlCache(CACHE_S, clock)
        self._series: TtlCache[list[Bucket]] = TtlCache(SERIES_CACHE_S, clock)
        self._dead: TtlCache[tuple[list[DeadGroup], bool]] = TtlCache(CACHE_S, clock)

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
        now = self.store.now()
        cumulative = [
            self.store.stats(window_s=float(SERIES_BUCKET_S * k))
            for k in range(1, SERIES_BUCKETS + 1)
        ]
        buckets = []
        for k in range(SERIES_BUCKETS, 0, -1):  # oldest first
            outer = cumulative[k - 1]
            inner = cumulative[k - 2] if k >= 2 else None
            buckets.append(
                Bucket(
                    start=after(now, -float(SERIES_BUCKET_S * k)),
                    succeeded=max(0, outer.succeeded - (inner.succeeded if inner else 0)),
                    dead=max(0, outer.dead - (inner.dead if inner else 0)),
                    failed_attempts=max(
                        0, outer.failed_attempts - (inner.failed_attempts if inner else 0)
                    ),
                )
            )
        return buckets

    def dead_groups(self) -> tuple[list[DeadGroup], bool]:
        """Groups by (task, error type), largest first, and whether every dead job was seen."""
        return self._dead.get(self._compute_dead_groups)

    def _compute_dead_groups(self) -> tuple[list[DeadGroup], bool]:
        members: dict[tuple[str, str], list[Job]] = {}
        seen = 0
        for job in _scan(self.store, JobFilter(states=frozenset({JobState.DEAD})), DEAD_SCAN_MAX):
            seen += 1
            members.setdefault((job.task, error_type_of(job)), []).append(job)
        total_dead = self.state_counts()[JobState.DEAD]
        groups = [
            DeadGroup(
                task=task,
                error_type=error_type,
                count=len(jobs),
                newest=jobs[0],
                job_ids=tuple(j.id for j in jobs),
            )
            for (task, error_type), jobs in members.items()
        ]
        groups.sort(key=lambda g: (-g.count, g.task, g.error_type))
        return groups, seen >= total_dead

    def dead_group(self, task: str, error_type: str) -> list[UUID]:
        """The ids of one group as the store has them now (not cached: they are acted on)."""
        groups, _ = self._compute_dead_groups()
        for group in groups:
            if group.task == task and group.error_type == error_type:
                return list(group.job_ids)
        return []

    def dependents(self, job: Job) -> Found:
        found = []
        complete = False
        for count, other in enumerate(_scan(self.store, JobFilter(), DEPENDENTS_SCAN_MAX), 1):
            if other.created_at < job.created_at:  # older than the job: no dependent left
                complete = True
                break
            if job.id in other.depends_on:
                found.append(other)
            if count == DEPENDENTS_SCAN_MAX:
                break
        else:
            complete = True
        return Found(jobs=tuple(reversed(found)), complete=complete)

    def find_by_key(self, key: str) -> Found:
        count = 0
        for count, job in enumerate(_scan(self.store, JobFilter(), KEY_SCAN_MAX), 1):  # noqa: B007
            if job.idempotency_key == key:
                return Found(jobs=(job,), complete=True)
        return Found(jobs=(), complete=count < KEY_SCAN_MAX)
