"""The invariant checker: every guarantee of `design.md`, judged on a finished history.

The input is a plain value, `History`: the jobs as they ended, their attempt records,
and, when the store kept one, the log of every committed change (`Recorded`). The
simulator hands over all three; a real PostgreSQL store has no transition log, so every
invariant says what it needs, and `check()` runs those the history can feed and lists
the others as skipped:

* `JOBS` — the final jobs and their attempts (any store can give these);
* `LOG` — the transition log as well (the in-memory store's history).

What clients were told (`acknowledged`, `replays`) and what the simulator injected
(`bystanders`) sharpen some checks when given.
Invariants marked `at_rest` (liveness) hold only once the world is quiet: pass
`at_rest=False` to check a world that is still running.

Times are compared as the history gives them. The simulator stamps each logged change
with the true (store) time at which it was committed, so a store that read some other
clock is judged by the time that really passed.

To add an invariant: write `def _check_x(h: History, out: Findings) -> None`, then add an
`Invariant` for it to `INVARIANTS` with the inputs it needs.
"""

from __future__ import annotations

import enum
import itertools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import attrs

from taskyard.adapters.memory import Pruned, Recorded
from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.model import (
    COMMITTED_OUTCOMES,
    Attempt,
    Job,
    JobState,
    Outcome,
)
from taskyard.domain.timefmt import seconds_between
from taskyard.domain.transitions import ENQUEUE_TARGETS, SHUTDOWN_ERROR, TRANSITIONS, Event

S = JobState

CLOSING_EVENTS = frozenset({Event.COMPLETE, Event.FAIL, Event.EXPIRE, Event.RELEASE})
"""Events that end an attempt: at most one of them per attempt may ever commit."""

WORKER_WRITES = frozenset(
    {Event.HEARTBEAT, Event.CHECKPOINT, Event.COMPLETE, Event.FAIL, Event.RELEASE}
)
"""Events that only the holder of a live lease may commit."""

RETRY_DELAY_SLACK_S = 0.001
"""Datetimes hold microseconds: a delay read back from two instants may be off by a hair."""


class Needs(enum.Flag):
    JOBS = enum.auto()
    LOG = enum.auto()


@attrs.frozen(kw_only=True)
class Replay:
    """A submission sent again with the same idempotency key, and what the client got."""

    key: str
    first_job_id: UUID
    replay_job_id: UUID | None
    """None when the replay was refused."""
    same_body: bool
    """False: the replay changed the body, so it must have been refused (a conflict)."""


@attrs.frozen(kw_only=True)
class Bystander:
    """An attempt whose worker held its lease when the store refused that worker's call
    about another job (`culprit`) with an unexpected error."""

    job_id: UUID
    attempt: int
    worker: str
    culprit: UUID
    struck_at: datetime
    excused: bool
    """Something else struck the same worker (a crash, a pause, a partition, a clock jump,
    an injected store failure) between a lease TTL before the refusal and the moment this
    attempt's lease lapsed: a lost lease proves nothing then."""


@attrs.frozen(kw_only=True)
class History:
    """Everything the checker reads. Only `jobs` and `attempts` are required."""

    jobs: Mapping[UUID, Job]
    attempts: Mapping[UUID, Sequence[Attempt]]
    """Per job, every attempt record (any order; the checker sorts by attempt number)."""
    log: Sequence[Recorded] | None = None
    """Every committed change in commit order, or None when the store keeps no log."""
    pruned: Mapping[UUID, Pruned] | None = None
    """The jobs a prune deleted, by id, as they were (they are in `jobs` as well), when the
    store kept them."""
    acknowledged: frozenset[UUID] | None = None
    """Jobs whose enqueue returned to a client (accepted), when known."""
    replays: Sequence[Replay] | None = None
    bystanders: Sequence[Bystander] | None = None
    """Attempts that shared a worker with a job the store refused (the simulator's)."""
    limits: Mapping[str, QueueLimits] = attrs.field(factory=dict)
    """The queues' limits, as set before any job ran (none: nothing to hold to)."""


@attrs.frozen(kw_only=True)
class Violation:
    invariant: str
    message: str
    job_id: UUID | None = None
    at: datetime | None = None


class Findings:
    """Collects violations for one invariant, capped so a broken run stays readable."""

    LIMIT = 20

    def __init__(self, invariant: str) -> None:
        self.invariant = invariant
        self.violations: list[Violation] = []
        self.total = 0

    def add(self, message: str, *, job_id: UUID | None = None, at: datetime | None = None) -> None:
        self.total += 1
        if len(self.violations) < self.LIMIT:
            self.violations.append(
                Violation(invariant=self.invariant, message=message, job_id=job_id, at=at)
            )


Check = Callable[[History, Findings], None]


@attrs.frozen(kw_only=True)
class Invariant:
    name: str
    guarantee: str
    """Which promise of design.md it checks."""
    needs: Needs
    check: Check
    at_rest: bool = False
    """True: holds only once the world is quiet (liveness); False: at every instant."""


@attrs.frozen(kw_only=True)
class CheckReport:
    checked: tuple[str, ...]
    skipped: tuple[str, ...]
    violations: tuple[Violation, ...]
    counts: Mapping[str, int]
    """Per invariant, how many violations were found (more than `violations` may list)."""

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def broken(self) -> tuple[str, ...]:
        return tuple(name for name in self.checked if self.counts.get(name, 0))

    def with_extra(self, name: str, violations: Sequence[Violation]) -> CheckReport:
        """This report plus an invariant checked elsewhere (the simulator checks some
        promises while it runs, such as a worker's slots)."""
        counts = dict(self.counts)
        counts[name] = len(violations)
        return CheckReport(
            checked=(*self.checked, name),
            skipped=self.skipped,
            violations=(*self.violations, *violations[: Findings.LIMIT]),
            counts=counts,
        )


def _attempts(h: History, job_id: UUID) -> list[Attempt]:
    return sorted(h.attempts.get(job_id, ()), key=lambda a: a.attempt)


def _short(job_id: UUID | None) -> str:
    return str(job_id)[-8:] if job_id is not None else "-"


# --- invariants on jobs and attempts --------------------------------------------------------


def _check_no_job_lost(h: History, out: Findings) -> None:
    """1. Every accepted job is in the store and ended terminal."""
    for job_id in sorted(h.acknowledged or ()):
        if job_id not in h.jobs:
            out.add("an acknowledged job is not in the store", job_id=job_id)
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        if not job.state.is_terminal:
            accepted = h.acknowledged is None or job_id in h.acknowledged
            kind = "accepted job" if accepted else "job (enqueue unacknowledged)"
            out.add(
                f"{kind} still {job.state.value} at attempt {job.attempt} after quiescence",
                job_id=job_id,
            )


def _check_pruned(h: History, out: Findings) -> None:
    """Retention deletes only finished jobs, and never one a job still in the store
    depends on: the job as deleted is terminal, the log's last word on it before the
    prune says so too, and each job depending on it was deleted no later."""
    pruned = h.pruned or {}
    last: dict[UUID, Recorded] = {}
    for rec in h.log or ():
        gone = pruned.get(rec.after.id)
        if gone is None or rec.at > gone.at:
            continue
        last[rec.after.id] = rec
    for job_id in sorted(pruned):
        gone = pruned[job_id]
        if not gone.job.state.is_terminal:
            out.add(f"a {gone.job.state.value} job was deleted", job_id=job_id, at=gone.at)
        said = last.get(job_id)
        if said is not None and not said.after.state.is_terminal:
            out.add(f"deleted while the log had it {said.after.state.value}", job_id=job_id)
    for job_id in sorted(h.jobs):
        for dep in h.jobs[job_id].depends_on:
            if dep not in pruned:
                continue
            mine = pruned.get(job_id)
            if mine is None or mine.at > pruned[dep].at:
                out.add(f"deleted while {_short(job_id)} depended on it", job_id=dep)


def _check_attempt_records(h: History, out: Findings) -> None:
    """Attempts are numbered 1..n with n the job's attempt; all but a running one are closed."""
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        records = _attempts(h, job_id)
        numbers = [a.attempt for a in records]
        if numbers != list(range(1, job.attempt + 1)):
            out.add(f"attempt records {numbers} for a job at attempt {job.attempt}", job_id=job_id)
            continue
        for record in records:
            live = job.state is S.RUNNING and record.attempt == job.attempt
            if record.outcome is Outcome.RUNNING and not live:
                out.add(f"attempt {record.attempt} was never closed", job_id=job_id)
            if record.finished_at is not None and record.finished_at < record.started_at:
                out.add(f"attempt {record.attempt} finished before it started", job_id=job_id)


def _check_one_outcome(h: History, out: Findings) -> None:
    """2. A job's outcome is committed once: one success at most, and it is the last word."""
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        records = _attempts(h, job_id)
        wins = [a.attempt for a in records if a.outcome is Outcome.SUCCEEDED]
        if len(wins) > 1:
            out.add(f"attempts {wins} all committed success", job_id=job_id)
        if job.state is S.SUCCEEDED and (
            not records or records[-1].outcome is not Outcome.SUCCEEDED
        ):
            last = records[-1].outcome.value if records else "none"
            out.add(f"succeeded, but its last attempt ended {last}", job_id=job_id)
        if wins and job.state is not S.SUCCEEDED:
            out.add(
                f"attempt {wins[0]} committed success, yet the job is {job.state.value}",
                job_id=job_id,
            )
        if job.state is S.DEAD and (not records or records[-1].outcome is Outcome.SUCCEEDED):
            out.add("dead without a failed last attempt", job_id=job_id)


def _check_fenced_writes(h: History, out: Findings) -> None:
    """2/3. An outcome a worker committed was committed while its lease was live."""
    for job_id in sorted(h.jobs):
        for record in _attempts(h, job_id):
            if record.outcome in COMMITTED_OUTCOMES and record.finished_at is not None:
                late_s = seconds_between(record.lease_expires_at, record.finished_at)
                if late_s > 0:
                    out.add(
                        f"attempt {record.attempt} ({record.worker}) committed "
                        f"{record.outcome.value} {late_s:.3f} s after its lease expired",
                        job_id=job_id,
                        at=record.finished_at,
                    )


def _lease_end(record: Attempt) -> tuple[datetime, bool]:
    """When an attempt's lease stopped being live, and whether its holder ended it (a
    report or a hand-back ends it at once; otherwise it lasts until it expires)."""
    handed_back = (
        record.outcome is Outcome.WORKER_LOST
        and record.error is not None
        and record.error.type == "shutdown"
    )
    if (record.outcome in COMMITTED_OUTCOMES or handed_back) and record.finished_at is not None:
        return min(record.finished_at, record.lease_expires_at), True
    return record.lease_expires_at, False


def _check_one_live_lease(h: History, out: Findings) -> None:
    """3. Attempt n+1 is claimed only after attempt n's lease ended, and a reaper only
    takes a lease that has expired."""
    for job_id in sorted(h.jobs):
        records = _attempts(h, job_id)
        for prev, nxt in itertools.pairwise(records):
            end, by_holder = _lease_end(prev)
            if nxt.started_at < end or (nxt.started_at == end and not by_holder):
                out.add(
                    f"attempt {nxt.attempt} claimed {seconds_between(nxt.started_at, end):.3f} s "
                    f"before the lease of attempt {prev.attempt} ended",
                    job_id=job_id,
                    at=nxt.started_at,
                )
        for record in records:
            reaped = (
                record.outcome is Outcome.WORKER_LOST
                and record.error is not None
                and record.error.type == "worker_lost"
            )
            if (
                reaped
                and record.finished_at is not None
                and record.finished_at <= record.lease_expires_at
            ):
                out.add(
                    f"attempt {record.attempt} reaped before its lease expired",
                    job_id=job_id,
                    at=record.finished_at,
                )


def _check_attempt_budget(h: History, out: Findings) -> None:
    """Attempts never pass the budget: a waiting job has an attempt left, a running one
    is within its limit."""
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        if job.attempt > job.attempt_limit:
            out.add(f"attempt {job.attempt} past its limit {job.attempt_limit}", job_id=job_id)
        elif job.state in (S.QUEUED, S.SCHEDULED, S.RETRYING) and job.attempt >= job.attempt_limit:
            out.add(
                f"{job.state.value} with no attempt left ({job.attempt}/{job.attempt_limit})",
                job_id=job_id,
            )
        if job.attempt_limit < job.max_attempts:
            out.add(f"limit {job.attempt_limit} below max_attempts", job_id=job_id)


def _check_dependency_order(h: History, out: Findings) -> None:
    """7. No attempt starts before every dependency succeeded; a job with a dependency
    that did not succeed ends cancelled, never having run."""
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        if not job.depends_on:
            continue
        records = _attempts(h, job_id)
        for dep_id in job.depends_on:
            dep = h.jobs.get(dep_id)
            if dep is None:
                out.add(f"depends on {_short(dep_id)}, which is not in the store", job_id=job_id)
                continue
            if dep.state is not S.SUCCEEDED:
                if records:
                    out.add(
                        f"ran {len(records)} attempt(s) though dependency {_short(dep_id)} "
                        f"is {dep.state.value}",
                        job_id=job_id,
                    )
                continue
            assert dep.finished_at is not None, dep
            for record in records:
                if record.started_at < dep.finished_at:
                    out.add(
                        f"attempt {record.attempt} started before dependency {_short(dep_id)} "
                        "succeeded",
                        job_id=job_id,
                        at=record.started_at,
                    )


def _check_dependency_failure(h: History, out: Findings) -> None:
    """7. A job whose dependency ended dead or cancelled ends cancelled."""
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        for dep_id in job.depends_on:
            dep = h.jobs.get(dep_id)
            if (
                dep is not None
                and dep.state in (S.DEAD, S.CANCELLED)
                and job.state is not S.CANCELLED
            ):
                out.add(
                    f"dependency {_short(dep_id)} ended {dep.state.value}, "
                    f"yet the job is {job.state.value}",
                    job_id=job_id,
                )


def _check_idempotency(h: History, out: Findings) -> None:
    """One job per idempotency key; a replay returns it, a changed body is refused."""
    seen: dict[str, UUID] = {}
    for job_id in sorted(h.jobs):
        key = h.jobs[job_id].idempotency_key
        if key is None:
            continue
        if key in seen:
            out.add(f"key {key!r} also names {_short(seen[key])}", job_id=job_id)
        else:
            seen[key] = job_id
    for replay in h.replays or ():
        if replay.same_body and replay.replay_job_id != replay.first_job_id:
            out.add(
                f"replay of key {replay.key!r} returned {_short(replay.replay_job_id)}",
                job_id=replay.first_job_id,
            )
        if not replay.same_body and replay.replay_job_id is not None:
            out.add(
                f"a different body under key {replay.key!r} was accepted as "
                f"{_short(replay.replay_job_id)}",
                job_id=replay.first_job_id,
            )


def _check_refusal_confined(h: History, out: Findings) -> None:
    """An unexpected store error about one job stays with that job: every other attempt
    its worker held a live lease for keeps that lease (ends neither `worker_lost` nor
    `stale`; a hand-back at shutdown is fine), unless something else struck the worker."""
    for b in sorted(h.bystanders or (), key=lambda b: (b.struck_at, b.job_id, b.attempt)):
        if b.excused:
            continue
        record = next((a for a in _attempts(h, b.job_id) if a.attempt == b.attempt), None)
        if record is None or record.outcome not in (Outcome.WORKER_LOST, Outcome.STALE):
            continue
        if record.error is not None and record.error.type == SHUTDOWN_ERROR:
            continue
        out.add(
            f"attempt {b.attempt} ended {record.outcome.value} on {b.worker} after the store "
            f"refused a call about {_short(b.culprit)}: the refusal was not confined",
            job_id=b.job_id,
            at=b.struck_at,
        )


def _check_run_at_jobs(h: History, out: Findings) -> None:
    """8. The attempt that ended a job (or runs it now) started at or after its run_at.

    A job's `run_at` changes only while it waits (a failure that leaves it retrying, a
    manual retry, a reschedule), never while it runs: so the latest attempt of a job that
    succeeded, ended dead or is running was claimed under the `run_at` it still shows.
    Earlier attempts were judged by a `run_at` since overwritten (the log variant,
    `run_at_respected`, checks each of those)."""
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        if job.state not in (S.SUCCEEDED, S.DEAD, S.RUNNING):
            continue
        records = _attempts(h, job_id)
        if not records:
            continue
        last = records[-1]
        if last.started_at < job.run_at:
            out.add(
                f"attempt {last.attempt} started {seconds_between(last.started_at, job.run_at):.3f}"
                " s before run_at",
                job_id=job_id,
                at=last.started_at,
            )


def _check_cancel_jobs(h: History, out: Findings) -> None:
    """A job flagged for cancellation only runs on until its attempt closes, and then ends
    cancelled; a cancelled job starts no attempt and commits no outcome after its cancel
    took effect (its `finished_at`)."""
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        if job.cancel_requested and job.state not in (S.RUNNING, S.CANCELLED):
            out.add(f"cancellation was requested, yet the job is {job.state.value}", job_id=job_id)
        if job.state is not S.CANCELLED or job.finished_at is None:
            continue
        for record in _attempts(h, job_id):
            if record.started_at > job.finished_at:
                out.add(
                    f"attempt {record.attempt} started "
                    f"{seconds_between(job.finished_at, record.started_at):.3f} s after the job "
                    "was cancelled",
                    job_id=job_id,
                    at=record.started_at,
                )
            elif (
                record.outcome in COMMITTED_OUTCOMES
                and record.finished_at is not None
                and record.finished_at > job.finished_at
            ):
                out.add(
                    f"attempt {record.attempt} committed {record.outcome.value} after the job "
                    "was cancelled",
                    job_id=job_id,
                    at=record.finished_at,
                )


# --- flow control ---------------------------------------------------------------------------

Scope = tuple[str, str | None]
"""A queue and a concurrency key; None for the key: the whole queue."""


def _describe_scope(scope: Scope) -> str:
    queue, key = scope
    return f"queue {queue}" if key is None else f"key {key!r} of queue {queue}"


def _concurrency_caps(limits: Mapping[str, QueueLimits], job: Job) -> list[tuple[Scope, int]]:
    """Each concurrency limit the running `job` counts against, with its cap."""
    set_ = limits.get(job.queue)
    if set_ is None:
        return []
    caps: list[tuple[Scope, int]] = []
    if set_.concurrency_limit is not None:
        caps.append(((job.queue, None), set_.concurrency_limit))
    if set_.key_concurrency_limit is not None and job.concurrency_key is not None:
        caps.append(((job.queue, job.concurrency_key), set_.key_concurrency_limit))
    return caps


def _rate_caps(limits: Mapping[str, QueueLimits], job: Job) -> list[tuple[Scope, RateLimit]]:
    """Each rate limit a start of `job` counts against."""
    set_ = limits.get(job.queue)
    if set_ is None:
        return []
    caps: list[tuple[Scope, RateLimit]] = []
    if set_.rate_limit is not None:
        caps.append(((job.queue, None), set_.rate_limit))
    if set_.key_rate_limit is not None and job.concurrency_key is not None:
        caps.append(((job.queue, job.concurrency_key), set_.key_rate_limit))
    return caps


def _cap_names(scope: Scope) -> tuple[str, str]:
    return (
        ("concurrency_limit", "rate_limit")
        if scope[1] is None
        else ("key_concurrency_limit", "key_rate_limit")
    )


class _Windows:
    """The starts of each rate-limited scope, judged as they come (in time order): at most
    `count` in any window of `period_s` seconds, the window's start excluded."""

    def __init__(self, out: Findings) -> None:
        self._out = out
        self._starts: dict[Scope, list[datetime]] = defaultdict(list)
        self._over: set[Scope] = set()

    def start(self, job: Job, caps: Sequence[tuple[Scope, RateLimit]], at: datetime) -> None:
        for scope, rate in caps:
            starts = self._starts[scope]
            starts.append(at)
            since = at - timedelta(seconds=rate.period_s)
            while starts and starts[0] <= since:
                starts.pop(0)
            if len(starts) <= rate.count:
                self._over.discard(scope)
            elif scope not in self._over:
                self._over.add(scope)
                first = seconds_between(starts[0], at)
                self._out.add(
                    f"{len(starts)} starts in {_describe_scope(scope)} within {first:.3f} s "
                    f"({_cap_names(scope)[1]} {rate.count} per {rate.period_s:g} s)",
                    job_id=job.id,
                    at=at,
                )


def _check_limits(h: History, out: Findings) -> None:
    """Flow control, from jobs and attempts: an attempt holds its queue's (and its key's)
    capacity from its claim until its lease ended (a report or hand-back ends it at once;
    otherwise it lasts until it expires, inclusive, by the store's clock); at no instant
    do more attempts hold a scope's capacity than its concurrency limit, and no window
    of a rate limit's period holds more starts than its count."""
    limits = h.limits
    if not limits:
        return
    edges: dict[Scope, list[tuple[datetime, int, UUID]]] = defaultdict(list)
    starts: list[tuple[datetime, UUID]] = []
    for job_id in sorted(h.jobs):
        job = h.jobs[job_id]
        caps = _concurrency_caps(limits, job)
        for record in _attempts(h, job_id):
            starts.append((record.started_at, job_id))
            if not caps:
                continue
            live_now = (
                job.state is S.RUNNING and record.attempt == job.attempt and job.lease is not None
            )
            if live_now:
                assert job.lease is not None
                end, by_holder = job.lease.expires_at, False
            else:
                end, by_holder = _lease_end(record)
            for scope, _ in caps:
                # At one instant: ends by the holder first, then claims, then expiries
                # (a lease is live up to and including its expiry instant).
                edges[scope].append((record.started_at, 1, job_id))
                edges[scope].append((end, 0 if by_holder else 2, job_id))
    for scope in sorted(edges, key=lambda s: (s[0], s[1] or "")):
        cap = _scope_cap(limits, scope)
        running = 0
        over = False
        for at, kind, job_id in sorted(edges[scope]):
            running += 1 if kind == 1 else -1
            if running > cap and not over:
                out.add(
                    f"{running} attempts of {_describe_scope(scope)} held live leases at once "
                    f"({_cap_names(scope)[0]} {cap})",
                    job_id=job_id,
                    at=at,
                )
            over = running > cap
    windows = _Windows(out)
    for at, job_id in sorted(starts):
        job = h.jobs[job_id]
        windows.start(job, _rate_caps(limits, job), at)


def _scope_cap(limits: Mapping[str, QueueLimits], scope: Scope) -> int:
    set_ = limits[scope[0]]
    cap = set_.concurrency_limit if scope[1] is None else set_.key_concurrency_limit
    assert cap is not None, scope
    return cap


# --- invariants on the transition log -------------------------------------------------------


def _log(h: History) -> Sequence[Recorded]:
    assert h.log is not None
    return h.log


def _check_legal_transitions(h: History, out: Findings) -> None:
    """Every change follows the table: `ENQUEUE_TARGETS` for new jobs, `TRANSITIONS` after;
    the fence (attempt number) only grows, and only a claim grows it."""
    for rec in _log(h):
        job = rec.after
        if rec.before is None:
            if rec.event is not Event.ENQUEUE or job.state not in ENQUEUE_TARGETS:
                out.add(
                    f"created by {rec.event.value} as {job.state.value}", job_id=job.id, at=rec.at
                )
            continue
        before = rec.before
        targets = TRANSITIONS.get((before.state, rec.event), frozenset())
        if job.state not in targets:
            out.add(
                f"{before.state.value} --{rec.event.value}--> {job.state.value} "
                "is not in the table",
                job_id=job.id,
                at=rec.at,
            )
        grew = job.attempt - before.attempt
        if grew != (1 if rec.event is Event.CLAIM else 0):
            out.add(
                f"{rec.event.value} moved the attempt from {before.attempt} to {job.attempt}",
                job_id=job.id,
                at=rec.at,
            )


def _check_fenced_log(h: History, out: Findings) -> None:
    """2/3. Only the live holder writes: every worker write lands while the lease of the
    attempt it names is live, by the store's clock, and is the writer's own; at most one
    write closes each attempt."""
    closed: dict[tuple[UUID, int], Event] = {}
    for rec in _log(h):
        before = rec.before
        if rec.event in WORKER_WRITES and before is not None:
            lease = before.lease
            if lease is None:
                out.add(
                    f"{rec.event.value} landed on a job without a lease",
                    job_id=before.id,
                    at=rec.at,
                )
            else:
                if rec.worker is not None and lease.worker != rec.worker:
                    out.add(
                        f"{rec.event.value} by {rec.worker} landed on the lease of {lease.worker}",
                        job_id=before.id,
                        at=rec.at,
                    )
                if rec.at > lease.expires_at:
                    out.add(
                        f"{rec.event.value} by {rec.worker} landed "
                        f"{seconds_between(lease.expires_at, rec.at):.3f} s after the lease of "
                        f"attempt {before.attempt} expired",
                        job_id=before.id,
                        at=rec.at,
                    )
            if rec.attempt is not None and rec.attempt.attempt != before.attempt:
                out.add(
                    f"{rec.event.value} of attempt {rec.attempt.attempt} landed on attempt "
                    f"{before.attempt}",
                    job_id=before.id,
                    at=rec.at,
                )
        if rec.event in CLOSING_EVENTS and before is not None:
            key = (before.id, before.attempt)
            if key in closed:
                out.add(
                    f"attempt {before.attempt} closed twice ({closed[key].value}, then "
                    f"{rec.event.value})",
                    job_id=before.id,
                    at=rec.at,
                )
            closed[key] = rec.event


def _check_one_live_lease_log(h: History, out: Findings) -> None:
    """3. At every store instant at most one attempt of a job holds a live lease: a claim
    comes only after the previous lease ended, and a reaper only takes an expired one."""
    live: dict[UUID, tuple[int, datetime, bool]] = {}
    """Per job: the latest lease's attempt, when it ends, and whether its holder ended it."""
    for rec in _log(h):
        job, before = rec.after, rec.before
        if before is None:
            continue
        if rec.event is Event.CLAIM and job.id in live:
            attempt, until, by_holder = live[job.id]
            if rec.at < until or (rec.at == until and not by_holder):
                out.add(
                    f"attempt {job.attempt} claimed while attempt {attempt}'s lease was live "
                    f"for {seconds_between(rec.at, until):.3f} s more",
                    job_id=job.id,
                    at=rec.at,
                )
        if (
            rec.event is Event.EXPIRE
            and before.lease is not None
            and rec.at <= before.lease.expires_at
        ):
            early_s = seconds_between(rec.at, before.lease.expires_at)
            out.add(
                f"attempt {before.attempt} reaped {early_s:.3f} s before its lease expired",
                job_id=job.id,
                at=rec.at,
            )
        if job.lease is not None:
            live[job.id] = (job.attempt, job.lease.expires_at, False)
        elif rec.event in (Event.COMPLETE, Event.FAIL, Event.RELEASE) and before.lease is not None:
            live[job.id] = (before.attempt, min(rec.at, before.lease.expires_at), True)


def _check_budget_log(h: History, out: Findings) -> None:
    """A claim never passes the limit; the limit moves only by the rules (a manual retry:
    attempt + max_attempts; a hand-back at shutdown: + 1)."""
    for rec in _log(h):
        job, before = rec.after, rec.before
        if before is None:
            if job.attempt_limit != job.max_attempts:
                out.add(f"created with limit {job.attempt_limit}", job_id=job.id, at=rec.at)
            continue
        if rec.event is Event.CLAIM and job.attempt > before.attempt_limit:
            out.add(
                f"claimed attempt {job.attempt} past its limit {before.attempt_limit}",
                job_id=job.id,
                at=rec.at,
            )
        if job.attempt_limit == before.attempt_limit:
            continue
        if rec.event is Event.RETRY:
            expected = before.attempt + before.max_attempts
        elif rec.event is Event.RELEASE:
            expected = before.attempt_limit + 1
        else:
            expected = before.attempt_limit
        if job.attempt_limit != expected:
            out.add(
                f"{rec.event.value} moved the limit {before.attempt_limit} -> "
                f"{job.attempt_limit} (expected {expected})",
                job_id=job.id,
                at=rec.at,
            )


def _check_run_at(h: History, out: Findings) -> None:
    """8. A job is made due and claimed only once its run_at has passed, by store time."""
    for rec in _log(h):
        if rec.before is None or rec.event not in (Event.CLAIM, Event.PROMOTE):
            continue
        if rec.at < rec.before.run_at:
            out.add(
                f"{rec.event.value} {seconds_between(rec.at, rec.before.run_at):.3f} s "
                "before run_at",
                job_id=rec.after.id,
                at=rec.at,
            )


def _check_dependency_log(h: History, out: Findings) -> None:
    """7. At each promotion, claim and creation-as-queued, every dependency had succeeded."""
    states: dict[UUID, JobState] = {}
    for rec in _log(h):
        job = rec.after
        became_due = job.state is S.QUEUED and (
            rec.before is None or rec.before.state is not S.QUEUED
        )
        if (became_due or rec.event is Event.CLAIM) and job.depends_on:
            waiting = [d for d in job.depends_on if states.get(d) is not S.SUCCEEDED]
            if waiting:
                out.add(
                    f"{rec.event.value} to {job.state.value} while dependency "
                    f"{_short(waiting[0])} was {states.get(waiting[0], 'missing')}",
                    job_id=job.id,
                    at=rec.at,
                )
        states[job.id] = job.state


def _check_cancel_honoured(h: History, out: Findings) -> None:
    """A cancellation requested while a job runs ends it cancelled when that attempt
    closes, whatever its handler returned."""
    for rec in _log(h):
        before = rec.before
        if (
            before is not None
            and before.cancel_requested
            and rec.event in CLOSING_EVENTS
            and rec.after.state is not S.CANCELLED
        ):
            out.add(
                f"{rec.event.value} ended attempt {before.attempt} {rec.after.state.value} "
                "though cancellation was requested",
                job_id=before.id,
                at=rec.at,
            )


def _check_retry_delay(h: History, out: Findings) -> None:
    """6. A retry waits as the job's policy says: run_at - now within its backoff bounds."""
    for rec in _log(h):
        before, job = rec.before, rec.after
        if before is None or rec.event is not Event.FAIL or job.state is not S.RETRYING:
            continue
        low, high = job.backoff.bounds_s(attempt=before.attempt)
        delay = seconds_between(rec.at, job.run_at)
        if not low - RETRY_DELAY_SLACK_S <= delay <= high + RETRY_DELAY_SLACK_S:
            out.add(
                f"retry after attempt {before.attempt} waits {delay:.3f} s, outside "
                f"[{low:.3f}, {high:.3f}]",
                job_id=job.id,
                at=rec.at,
            )


def _check_store_time(h: History, out: Findings) -> None:
    """The store's clock never runs backwards (it is the one time authority)."""
    last: datetime | None = None
    for rec in _log(h):
        if last is not None and rec.at < last:
            out.add(f"store time went back {seconds_between(rec.at, last):.6f} s", at=rec.at)
        last = rec.at


def _check_limits_log(h: History, out: Findings) -> None:
    """Flow control, at every committed change: the jobs of a queue (and of one of its
    concurrency keys) that are running with a lease live by the store's clock at that
    instant number at most its concurrency limit, and each claim leaves at most `count`
    starts in the window of a rate limit's period that ends with it. Only a claim adds a
    lease, and time only expires them, so every instant between two changes is covered."""
    limits = h.limits
    if not limits:
        return
    live: dict[UUID, Job] = {}
    over: set[Scope] = set()
    windows = _Windows(out)
    for rec in _log(h):
        job = rec.after
        if job.state is S.RUNNING and job.lease is not None:
            live[job.id] = job
        else:
            live.pop(job.id, None)
        if rec.event is Event.CLAIM:
            windows.start(job, _rate_caps(limits, job), rec.at)
        counts: dict[Scope, int] = defaultdict(int)
        for held in live.values():
            assert held.lease is not None
            if rec.at <= held.lease.expires_at:
                for scope, _ in _concurrency_caps(limits, held):
                    counts[scope] += 1
        for scope in sorted(set(counts) | over, key=lambda s: (s[0], s[1] or "")):
            cap = _scope_cap(limits, scope)
            if counts[scope] > cap and scope not in over:
                out.add(
                    f"{counts[scope]} jobs of {_describe_scope(scope)} running with live "
                    f"leases after {rec.event.value} of {_short(job.id)} "
                    f"({_cap_names(scope)[0]} {cap})",
                    job_id=job.id,
                    at=rec.at,
                )
            if counts[scope] > cap:
                over.add(scope)
            else:
                over.discard(scope)


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        name="no_job_lost",
        guarantee="1",
        needs=Needs.JOBS,
        check=_check_no_job_lost,
        at_rest=True,
    ),
    Invariant(
        name="attempt_records", guarantee="2", needs=Needs.JOBS, check=_check_attempt_records
    ),
    Invariant(
        name="prune_finished_only",
        guarantee="1",
        needs=Needs.JOBS,
        check=_check_pruned,
    ),
    Invariant(name="one_outcome", guarantee="2", needs=Needs.JOBS, check=_check_one_outcome),
    Invariant(name="fenced_writes", guarantee="2", needs=Needs.JOBS, check=_check_fenced_writes),
    Invariant(name="one_live_lease", guarantee="3", needs=Needs.JOBS, check=_check_one_live_lease),
    Invariant(name="attempt_budget", guarantee="-", needs=Needs.JOBS, check=_check_attempt_budget),
    Invariant(
        name="dependency_order", guarantee="7", needs=Needs.JOBS, check=_check_dependency_order
    ),
    Invariant(
        name="dependency_failure",
        guarantee="7",
        needs=Needs.JOBS,
        check=_check_dependency_failure,
        at_rest=True,
    ),
    Invariant(name="idempotency", guarantee="-", needs=Needs.JOBS, check=_check_idempotency),
    Invariant(
        name="refusal_confined", guarantee="-", needs=Needs.JOBS, check=_check_refusal_confined
    ),
    Invariant(
        name="run_at_respected_jobs", guarantee="8", needs=Needs.JOBS, check=_check_run_at_jobs
    ),
    Invariant(
        name="cancel_honoured_jobs", guarantee="-", needs=Needs.JOBS, check=_check_cancel_jobs
    ),
    Invariant(name="flow_limits", guarantee="10", needs=Needs.JOBS, check=_check_limits),
    Invariant(
        name="legal_transitions", guarantee="4", needs=Needs.LOG, check=_check_legal_transitions
    ),
    Invariant(name="fenced_writes_log", guarantee="2", needs=Needs.LOG, check=_check_fenced_log),
    Invariant(
        name="one_live_lease_log", guarantee="3", needs=Needs.LOG, check=_check_one_live_lease_log
    ),
    Invariant(name="attempt_budget_log", guarantee="-", needs=Needs.LOG, check=_check_budget_log),
    Invariant(name="run_at_respected", guarantee="8", needs=Needs.LOG, check=_check_run_at),
    Invariant(
        name="dependency_order_log", guarantee="7", needs=Needs.LOG, check=_check_dependency_log
    ),
    Invariant(name="retry_delay", guarantee="6", needs=Needs.LOG, check=_check_retry_delay),
    Invariant(name="cancel_honoured", guarantee="-", needs=Needs.LOG, check=_check_cancel_honoured),
    Invariant(name="store_time", guarantee="4", needs=Needs.LOG, check=_check_store_time),
    Invariant(name="flow_limits_log", guarantee="10", needs=Needs.LOG, check=_check_limits_log),
)


def check(
    history: History, *, only: Sequence[str] | None = None, at_rest: bool = True
) -> CheckReport:
    """Run every invariant the history can feed (or those named in `only`). With
    `at_rest=False` (a world still running), the liveness invariants are left out."""
    available = Needs.JOBS
    if history.log is not None:
        available |= Needs.LOG
    checked: list[str] = []
    skipped: list[str] = []
    violations: list[Violation] = []
    counts: dict[str, int] = defaultdict(int)
    for invariant in INVARIANTS:
        if only is not None and invariant.name not in only:
            continue
        if invariant.at_rest and not at_rest:
            continue
        if invariant.needs & available != invariant.needs:
            skipped.append(invariant.name)
            continue
        findings = Findings(invariant.name)
        invariant.check(history, findings)
        checked.append(invariant.name)
        violations.extend(findings.violations)
        counts[invariant.name] = findings.total
    return CheckReport(
        checked=tuple(checked),
        skipped=tuple(skipped),
        violations=tuple(violations),
        counts=dict(counts),
    )
