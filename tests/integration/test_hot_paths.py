"""Differential tests of PostgreSQL's hot paths (`taskyard/adapters/postgres/hotpaths.py`).

Each hot path restates a rule of the domain in SQL. Here generated histories run through
the set-based statement and through the pure rule, at the same instant, and must end the
same: the same answers, the same jobs, the same attempt records.

A history (`tests.strategies.store_histories`: enqueues with delays, keys and
dependencies, claims, heartbeats, reports, hand-backs, cancels, pauses, scheduler passes
and steps of a manual clock) is played on the in-memory store. Its rows are then copied
into PostgreSQL inside one transaction with every time shifted so that the history's
last moment is that transaction's `now()`, the server's clock for everything the
transaction runs. The same call is then made both ways: the hot path in that transaction,
and the engine on a second in-memory copy whose clock stands at the same instant. The
transaction is rolled back.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore, MemoryRows, MemoryState
from taskyard.adapters.postgres import hotpaths
from taskyard.adapters.postgres.rows import ATTEMPTS, COPY_MIN_JOBS, JOBS, J, PostgresRows
from taskyard.adapters.sqlshared import normalized
from taskyard.domain.errors import TaskyardError
from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.ids import uuid7
from taskyard.domain.model import Attempt, ErrorInfo, Job, JobState, LeaseRef, NewJob, Outcome
from taskyard.domain.ports import ClaimRequest, ReportResult, ReportStatus
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.store import Changes, plans
from taskyard.domain.submission import Submission
from taskyard.domain.transitions import Report, ReportKind
from tests import services
from tests.strategies import (
    STORE_QUEUES,
    STORE_TASKS,
    STORE_WORKERS,
    milliseconds,
    store_histories,
)

START = datetime(2030, 1, 1, tzinfo=UTC)
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
POLICIES = (RetryPolicy(jitter=Jitter.NONE), RetryPolicy(base_s=0.25, factor=3.0, max_s=9.0))


@attrs.define
class History:
    """A store's life so far, on the in-memory store and a manual clock."""

    clock: ManualClock = attrs.field(factory=lambda: ManualClock(START))
    rng: random.Random = attrs.field(factory=lambda: random.Random(7))
    refs: list[LeaseRef] = attrs.field(factory=list)
    """Every lease handed out, current or not."""
    store: InMemoryJobStore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.store = InMemoryJobStore(self.clock)

    def new_job(self, **fields: Any) -> NewJob:
        if fields.get("args") is None:
            fields["args"] = {"n": self.rng.randrange(1000)}
        return Submission(**fields).to_new_job(job_id=uuid7(self.clock.now(), self.rng))

    def ref(self, pick: int) -> LeaseRef | None:
        """One of the leases handed out so far."""
        return self.refs[pick % len(self.refs)] if self.refs else None

    def play(self, op: tuple[Any, ...]) -> None:
        kind, *rest = op
        store = self.store
        try:
            if kind == "enqueue":
                count, queue, task, priority, delay_ms, max_attempts, dep, key = rest
                known = sorted(store.state.jobs)
                depends_on = (self.rng.choice(known),) if dep and known else ()
                jobs = [
                    self.new_job(
                        task=task,
                        queue=queue,
                        priority=priority,
                        delay_s=None if delay_ms is None else delay_ms / 1000,
                        max_attempts=max_attempts,
                        backoff=POLICIES[priority % 2],
                        depends_on=depends_on,
                        idempotency_key=key if n == 0 else None,
                        args={"n": n} if key else None,
                    )
                    for n in range(count)
                ]
                store.enqueue(jobs)
            elif kind == "claim":
                worker, limit, ttl_ms = rest
                request = ClaimRequest(worker=worker, limit=limit, lease_ttl_s=ttl_ms / 1000)
                self.refs.extend(job.ref() for job in store.claim(request))
            elif kind == "advance":
                self.clock.advance(rest[0] / 1000)
            elif kind == "pause":
                store.set_paused(rest[0], paused=rest[1])
            elif kind == "scheduler":
                store.resolve_dependencies(limit=10)
                store.promote_due(limit=10)
                store.reap_expired(limit=10)
            elif (ref := self.ref(rest[0])) is not None:
                self._play_on(kind, ref, rest)
        except TaskyardError:
            pass  # a refusal is part of a history too

    def lease_fresh(self) -> None:
        """Three more running jobs with long leases, the first asked to cancel: whatever came
        before, a heartbeat or a report has live leases of both kinds to meet."""
        self.store.enqueue([self.new_job(task="t1", queue="z") for _ in range(3)])
        request = ClaimRequest(worker="w1", limit=3, lease_ttl_s=600, queues=frozenset({"z"}))
        claimed = self.store.claim(request)
        self.refs.extend(job.ref() for job in claimed)
        self.store.cancel(claimed[0].id)

    def _play_on(self, kind: str, ref: LeaseRef, rest: list[Any]) -> None:
        if kind == "heartbeat":
            self.store.heartbeat([ref], lease_ttl_s=rest[1] / 1000)
        elif kind == "report":
            self.store.report([report(ref, rest[1], retryable=rest[2], delay_ms=rest[0])])
        elif kind == "release":
            self.store.release([ref])
        elif kind == "cancel":
            self.store.cancel(ref.job_id)


def report(ref: LeaseRef, kind: str, *, retryable: bool = True, delay_ms: int = 0) -> Report:
    if kind == "succeeded":
        return Report(ref=ref, kind=ReportKind.SUCCEEDED, result={"by": ref.worker})
    return Report(
        ref=ref,
        kind=ReportKind(kind),
        error=ErrorInfo(type="E", message=f"{kind} at {ref.attempt}", traceback="tb"),
        retryable=retryable,
        retry_delay_s=delay_ms / 1000,
    )


def played(ops: Sequence[tuple[Any, ...]]) -> History:
    history = History()
    for op in ops:
        history.play(op)
    return history


# --- the two copies -----------------------------------------------------------------------


def _shift_job(job: Job, delta: timedelta) -> Job:
    return attrs.evolve(
        job,
        run_at=job.run_at + delta,
        created_at=job.created_at + delta,
        updated_at=job.updated_at + delta,
        finished_at=None if job.finished_at is None else job.finished_at + delta,
        lease=None
        if job.lease is None
        else attrs.evolve(job.lease, expires_at=job.lease.expires_at + delta),
    )


def _shift_attempt(record: Attempt, delta: timedelta) -> Attempt:
    return attrs.evolve(
        record,
        started_at=record.started_at + delta,
        lease_expires_at=record.lease_expires_at + delta,
        finished_at=None if record.finished_at is None else record.finished_at + delta,
    )


@attrs.define
class Twins:
    """The history's rows in PostgreSQL (an open transaction) and in memory, at one now."""

    conn: psycopg.Connection[Any]
    memory: InMemoryJobStore
    now: datetime

    def postgres(self) -> tuple[list[Job], list[Attempt]]:
        jobs = self.conn.execute(f"SELECT {J} FROM taskyard.jobs AS j ORDER BY id").fetchall()
        records = self.conn.execute(
            f"SELECT {ATTEMPTS.select()} FROM taskyard.attempts ORDER BY job_id, attempt"
        ).fetchall()
        return [JOBS.read(r) for r in jobs], [ATTEMPTS.read(r) for r in records]

    def in_memory(self) -> tuple[list[Job], list[Attempt]]:
        state = self.memory.state
        records = [r for job_id in sorted(state.attempts) for r in state.attempts[job_id]]
        return [state.jobs[i] for i in sorted(state.jobs)], sorted(
            records, key=lambda r: (r.job_id, r.attempt)
        )

    def assert_same_rows(self) -> None:
        pg_jobs, pg_records = self.postgres()
        mem_jobs, mem_records = self.in_memory()
        assert [j.id for j in pg_jobs] == [j.id for j in mem_jobs]
        for theirs, ours in zip(pg_jobs, mem_jobs, strict=True):
            assert theirs == ours, f"job {ours.id}:\n  sql:  {theirs}\n  pure: {ours}"
        assert pg_records == mem_records


def twins(
    conn: psycopg.Connection[Any],
    history: History,
    align: int | None = None,
    near: Sequence[LeaseRef] = (),
) -> Twins:
    """Copy the history's rows into a new transaction of `conn`, shifted so that its now()
    is the history's last moment or, with `align`, one of the moments a rule turns on (a
    lease's expiry or a run_at; of the jobs of `near` when given): the boundaries, where
    `<` and `<=` part."""
    conn.rollback()
    rows = PostgresRows(conn, locking=True)
    now = rows.now()
    source = history.store.state
    jobs = [source.jobs[r.job_id] for r in near if r.job_id in source.jobs]
    jobs = jobs or list(source.jobs.values())
    moments = sorted(
        {job.run_at for job in jobs}
        | {job.lease.expires_at for job in jobs if job.lease is not None}
    )
    moment = moments[align % len(moments)] if align is not None and moments else None
    delta = now - (moment or history.clock.now())
    jobs = [_shift_job(source.jobs[i], delta) for i in sorted(source.jobs)]
    records = [_shift_attempt(r, delta) for rs in source.attempts.values() for r in rs]
    changes = Changes(at=now, created=jobs, attempts=records)
    rows.write(changes)
    state = MemoryState()
    MemoryRows(state, now).write(changes)
    for queue in sorted(source.paused):
        rows.set_paused(queue, paused=True)
        state.paused.add(queue)
    return Twins(conn=conn, memory=InMemoryJobStore(ManualClock(now), state=state), now=now)


@pytest.fixture
def conn(migrated_postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    services.truncate_taskyard(migrated_postgres_url)
    with psycopg.connect(migrated_postgres_url) as conn:
        yield conn
        conn.rollback()


# --- the hot paths ------------------------------------------------------------------------

ORDER_TIES = [
    ("enqueue", 2, "a", "t1", 0, 2000, 3, False, None),
    ("advance", 1000),
    ("enqueue", 1, "a", "t2", 0, None, 3, False, None),
    ("enqueue", 1, "b", "t1", 0, None, 3, False, None),
    ("advance", 1500),
]
"""Jobs of one priority whose run_at order is not their id order (the older ones waited),
within a queue and across two: a claim of fewer than all of them must take them by run_at,
then id."""
aligns = st.none() | st.integers(min_value=0, max_value=50)


claim_requests = st.builds(
    ClaimRequest,
    worker=st.sampled_from(STORE_WORKERS),
    limit=st.sampled_from([1, 2, 2, 3, 8]),
    lease_ttl_s=milliseconds.map(lambda ms: ms / 1000),
    queues=st.sampled_from([None, None, {"a", "b"}, {"a"}, {"b", "c"}, set()]).map(
        lambda q: q if q is None else frozenset(q)
    ),
    tasks=st.sampled_from([None, None, frozenset({"t1"}), frozenset({"t2"})]),
)


@EXAMPLES
@given(
    ops=store_histories,
    align=aligns,
    requests=st.lists(claim_requests, min_size=1, max_size=4),
)
def test_the_claim_statement_takes_what_the_pure_claim_takes(
    conn: psycopg.Connection[Any],
    ops: list[tuple[Any, ...]],
    align: int | None,
    requests: list[ClaimRequest],
) -> None:
    history = played([*ops, *ORDER_TIES])
    history.store.promote_due(limit=100)
    both = twins(conn, history, align)
    for request in requests:  # one after another, at the same instant
        with conn.transaction(force_rollback=True):  # the engine over these rows, undone
            engine = plans.claim(PostgresRows(conn, locking=True), request)
        claimed = hotpaths.claim(conn, request)
        assert claimed == both.memory.claim(request) == engine, request
        event(f"claimed {min(len(claimed), 2)}+")
    both.assert_same_rows()


# --- the governed claim (flow control) ---------------------------------------------------

FLOW_KEYS = st.sampled_from([None, "k1", "k2", "k3", "k4", "k5", "k6", "ü"])
FLOW_RATES = st.none() | st.builds(
    RateLimit, count=st.integers(1, 4), period_s=st.sampled_from([0.5, 1.0, 2.5])
)
FLOW_LIMITS = st.builds(
    QueueLimits,
    concurrency_limit=st.none() | st.integers(1, 6),
    key_concurrency_limit=st.none() | st.integers(1, 3),
    rate_limit=FLOW_RATES,
    key_rate_limit=FLOW_RATES,
    weight=st.integers(1, 4),
)
flow_ops = st.lists(
    st.one_of(
        st.tuples(st.just("limits"), st.sampled_from(STORE_QUEUES), FLOW_LIMITS),
        st.tuples(
            st.just("enqueue"),
            st.integers(1, 4),
            st.sampled_from(STORE_QUEUES),
            FLOW_KEYS,
            st.integers(-1, 1),
            st.none() | st.integers(1, 1500),
            st.sampled_from(STORE_TASKS),
        ),
        st.tuples(
            st.just("claim"),
            st.integers(1, 5),
            st.integers(100, 3000),
            st.sampled_from([None, ("a",), ("a", "b"), ("b", "c")]),
        ),
        st.tuples(st.just("advance"), st.integers(1, 1500)),
        st.tuples(st.just("finish"), st.integers(0, 50)),
        st.tuples(st.just("pause"), st.sampled_from(STORE_QUEUES), st.booleans()),
    ),
    max_size=30,
)


def flow_history(ops: Sequence[tuple[Any, ...]]) -> History:
    history = History()
    store = history.store
    for kind, *rest in ops:
        if kind == "limits":
            store.set_queue_limits(rest[0], rest[1])
        elif kind == "enqueue":
            count, queue, key, priority, delay_ms, task = rest
            store.enqueue(
                [
                    history.new_job(
                        task=task,
                        queue=queue,
                        priority=priority,
                        delay_s=None if delay_ms is None else delay_ms / 1000,
                        concurrency_key=key,
                    )
                    for _ in range(count)
                ]
            )
        elif kind == "claim":
            limit, ttl_ms, queues = rest
            request = ClaimRequest(
                worker="w1",
                limit=limit,
                lease_ttl_s=ttl_ms / 1000,
                queues=None if queues is None else frozenset(queues),
            )
            history.refs.extend(job.ref() for job in store.claim(request))
        elif kind == "advance":
            history.clock.advance(rest[0] / 1000)
        elif kind == "finish" and (ref := history.ref(rest[0])) is not None:
            store.report([report(ref, "succeeded")])
        elif kind == "pause":
            store.set_paused(rest[0], paused=rest[1])
    store.promote_due(limit=100)
    return history


def flow_twins(conn: psycopg.Connection[Any], history: History) -> Twins:
    """`twins`, with the queues' settings (limits, turns) and starts logs copied too."""
    both = twins(conn, history)
    source = history.store.state
    delta = both.now - history.clock.now()
    rows = PostgresRows(conn, locking=True)
    target = both.memory.state
    for queue, kept in sorted(source.settings.items()):
        rows.put_queue_limits(queue, kept.limits)
        target.settings[queue] = kept
        if kept.turn_after is not None:
            rows.set_turns({queue: kept.turn_after})
    for queue, starts in sorted(source.starts.items()):
        shifted = [attrs.evolve(start, at=start.at + delta) for start in starts]
        rows.record_starts(queue, shifted, keep_after=datetime.min.replace(tzinfo=UTC))
        target.starts[queue] = shifted
    return both


def flow_state(conn: psycopg.Connection[Any]) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    rows = PostgresRows(conn, locking=False)
    settings = {q: (s.limits, s.turn_after) for q, s in rows.queue_settings().items()}
    starts = conn.execute(
        "SELECT queue, concurrency_key, started_at FROM taskyard.queue_starts"
        " ORDER BY queue, started_at, concurrency_key NULLS FIRST"
    ).fetchall()
    return settings, [(q, k, t.astimezone(UTC)) for q, k, t in starts]


def memory_flow_state(memory: InMemoryJobStore) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    state = memory.state
    settings = {q: (s.limits, s.turn_after) for q, s in state.settings.items()}
    starts = sorted(
        ((q, s.key, s.at) for q, log in state.starts.items() for s in log),
        key=lambda r: (r[0], r[2], r[1] is not None, r[1] or ""),
    )
    return settings, starts


flow_requests = st.builds(
    ClaimRequest,
    worker=st.sampled_from(STORE_WORKERS),
    limit=st.sampled_from([1, 2, 3, 5, 8]),
    lease_ttl_s=milliseconds.map(lambda ms: ms / 1000),
    queues=st.sampled_from([None, None, {"a", "b"}, {"a"}, {"b", "c"}]).map(
        lambda q: q if q is None else frozenset(q)
    ),
    tasks=st.sampled_from([None, None, frozenset({"t1"})]),
)


FLOW_TAIL = [
    ("enqueue", 4, "a", "k1", 0, None, "t1"),
    ("enqueue", 2, "a", "k2", 1, None, "t1"),
    ("enqueue", 1, "a", "k4", 0, None, "t1"),
    ("enqueue", 1, "a", "k5", 0, None, "t2"),
    ("enqueue", 2, "a", "k6", 0, None, "t1"),
    ("enqueue", 3, "a", None, 0, None, "t2"),
    ("enqueue", 3, "b", "k1", 0, None, "t1"),
    ("enqueue", 2, "b", "k3", 0, None, "t1"),
    ("enqueue", 3, "c", None, 0, None, "t1"),
]
"""Due work in every queue, with keys, at the end of every history."""


@EXAMPLES
@given(
    limits=st.tuples(FLOW_LIMITS, FLOW_LIMITS),
    ops=flow_ops,
    requests=st.lists(flow_requests, min_size=1, max_size=4),
)
def test_the_governed_claim_statement_takes_what_the_pure_rule_admits(
    conn: psycopg.Connection[Any],
    limits: tuple[QueueLimits, QueueLimits],
    ops: list[tuple[Any, ...]],
    requests: list[ClaimRequest],
) -> None:
    head = [("limits", "a", limits[0]), ("limits", "b", limits[1]), *FLOW_TAIL]
    history = flow_history([*head, *ops, *FLOW_TAIL])
    both = flow_twins(conn, history)
    for request in requests:  # one after another, at the same instant
        with conn.transaction(force_rollback=True):  # the engine over these rows, undone
            engine = plans.claim(PostgresRows(conn, locking=True), request)
        claimed = hotpaths.claim(conn, request)
        assert claimed == both.memory.claim(request) == engine, request
        governed = {j.queue for j in claimed} & set(history.store.state.settings)
        event(f"claimed {min(len(claimed), 3)}+ from {min(len(governed), 2)} governed")
    both.assert_same_rows()
    assert flow_state(conn) == memory_flow_state(both.memory)


def _refs(history: History, picked: Sequence[int], strangers: int) -> list[LeaseRef]:
    """Leases of the history, mostly of running jobs (live or lapsed), some superseded or
    repeated, and some that no store handed out: a running job's lease with another worker
    or a later attempt, or a job that does not exist."""
    running = [j.ref() for j in history.store.state.jobs.values() if j.lease is not None]
    refs: list[LeaseRef] = []
    for n, pick in enumerate(picked):
        source = running if running and n % 3 else history.refs
        if source:
            refs.append(source[pick % len(source)])
    for n in range(strangers):
        if not running:
            refs.append(LeaseRef(job_id=UUID(int=n + 1), attempt=1, worker="w1"))
            continue
        ref = running[(n * 7 + len(picked)) % len(running)]
        refs.append(
            attrs.evolve(ref, worker="someone-else")
            if n % 2 == 0
            else attrs.evolve(ref, attempt=ref.attempt + 1)
        )
    return refs


picks = st.lists(st.integers(min_value=0, max_value=50), max_size=6)


@EXAMPLES
@given(
    ops=store_histories,
    align=aligns,
    picked=picks,
    strangers=st.integers(min_value=0, max_value=2),
    ttl_ms=milliseconds,
)
def test_the_heartbeat_statement_extends_what_the_pure_heartbeat_extends(
    conn: psycopg.Connection[Any],
    ops: list[tuple[Any, ...]],
    align: int | None,
    picked: list[int],
    strangers: int,
    ttl_ms: int,
) -> None:
    history = played(ops)
    history.lease_fresh()
    refs = _refs(history, picked, strangers)
    both = twins(conn, history, align, near=refs)
    ttl_s = ttl_ms / 1000
    expected = both.memory.heartbeat(refs, lease_ttl_s=ttl_s) if refs else []
    assert hotpaths.heartbeat(conn, refs, lease_ttl_s=ttl_s) == expected
    event(f"leases held: {sorted({s.held for s in expected})}")
    both.assert_same_rows()


@EXAMPLES
@given(
    ops=store_histories,
    align=aligns,
    picked=picks,
    kinds=st.lists(st.sampled_from(["succeeded"] * 4 + ["failed", "timeout"]), max_size=6),
    strangers=st.integers(min_value=0, max_value=2),
)
def test_the_success_statement_commits_exactly_the_successes_the_pure_rule_commits(
    conn: psycopg.Connection[Any],
    ops: list[tuple[Any, ...]],
    align: int | None,
    picked: list[int],
    kinds: list[str],
    strangers: int,
) -> None:
    history = played(ops)
    history.lease_fresh()
    refs = _refs(history, picked, strangers)
    reports = [
        report(ref, kinds[n % len(kinds)] if kinds else "succeeded") for n, ref in enumerate(refs)
    ]
    both = twins(conn, history, align, near=refs)
    expected = both.memory.report(reports) if reports else []
    fast = plans.first_successes(reports)
    committed = hotpaths.report_succeeded(conn, [reports[i] for i in fast]) if fast else set()
    # Not one success more or less than the pure rule commits: nothing is left to the
    # pure path that the statement should have taken, and nothing taken that it should not.
    assert committed == {
        reports[i].ref.job_id
        for i in fast
        if (expected[i].status, expected[i].state) == (ReportStatus.APPLIED, JobState.SUCCEEDED)
    }
    rest = [
        i for i in range(len(reports)) if i not in fast or reports[i].ref.job_id not in committed
    ]
    answers: dict[int, ReportResult] = {
        i: ReportResult(ref=reports[i].ref, status=ReportStatus.APPLIED, state=JobState.SUCCEEDED)
        for i in fast
        if reports[i].ref.job_id in committed
    }
    if rest:
        judged = plans.report(
            PostgresRows(conn, locking=True), [reports[i] for i in rest], normal=normalized
        )
        answers.update(zip(rest, judged, strict=True))
    assert [answers[i] for i in range(len(reports))] == expected
    for answer in expected:
        event(f"report {answer.status.value} -> {answer.state.value if answer.state else None}")
    both.assert_same_rows()


def test_the_success_statement_clears_the_last_error_as_the_pure_rule_does(
    conn: psycopg.Connection[Any],
) -> None:
    """A job that failed once and succeeds at its second attempt: both ways it shows no
    error, and the failed attempt keeps its own (generated histories rarely get there)."""
    history = History()
    history.store.enqueue([history.new_job(task="t1", queue="z", max_attempts=3)])
    request = ClaimRequest(worker="w1", limit=1, lease_ttl_s=600, queues=frozenset({"z"}))
    [first] = history.store.claim(request)
    history.store.report([report(first.ref(), "failed")])
    assert history.store.promote_due(limit=10).count == 1
    [second] = history.store.claim(request)
    assert history.store.get(second.id).last_error is not None
    both = twins(conn, history)
    success = report(second.ref(), "succeeded")
    [expected] = both.memory.report([success])
    assert (expected.status, expected.state) == (ReportStatus.APPLIED, JobState.SUCCEEDED)
    assert hotpaths.report_succeeded(conn, [success]) == {second.id}
    both.assert_same_rows()
    assert both.memory.get(second.id).last_error is None


@st.composite
def plain_submissions(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Fields of plain jobs, with `run_at` as milliseconds from the store's now (0: exactly
    now, the boundary between queued and scheduled)."""
    count = draw(st.sampled_from([1, 1, 2, 5, COPY_MIN_JOBS - 1, COPY_MIN_JOBS]))
    when = st.one_of(
        st.just({}),
        st.builds(lambda ms: {"run_at_ms": ms}, st.integers(min_value=-5_000, max_value=5_000)),
        st.builds(lambda ms: {"delay_s": ms / 1000}, st.just(0) | milliseconds),
    )
    shape = st.fixed_dictionaries(
        {
            "task": st.sampled_from(STORE_TASKS),
            "queue": st.sampled_from(STORE_QUEUES),
            "priority": st.integers(min_value=-3, max_value=3),
            "max_attempts": st.integers(min_value=1, max_value=5),
            "timeout_s": st.none() | st.sampled_from([0.5, 30.0]),
            "backoff": st.sampled_from(POLICIES),
            "args": st.sampled_from(
                [{}, {"n": 1}, {"list": [1, "two", None], "nested": {"x": 1.5}}]
            ),
        }
    )
    first = draw(st.tuples(shape, when))
    rest = draw(st.lists(st.tuples(shape, when), min_size=count - 1, max_size=count - 1))
    return [{**fields, **timing} for fields, timing in [first, *rest]]


@EXAMPLES
@given(ops=store_histories, submissions=plain_submissions())
def test_the_plain_insert_makes_the_jobs_the_pure_create_makes(
    conn: psycopg.Connection[Any], ops: list[tuple[Any, ...]], submissions: list[dict[str, Any]]
) -> None:
    history = played(ops)
    both = twins(conn, history)
    jobs: list[NewJob] = []
    for submission in submissions:
        fields = dict(submission)
        run_at_ms = fields.pop("run_at_ms", None)
        if run_at_ms is not None:
            fields["run_at"] = both.now + timedelta(milliseconds=run_at_ms)
        jobs.append(history.new_job(**fields))
    expected = both.memory.enqueue(jobs)
    if len(jobs) < COPY_MIN_JOBS:
        made = hotpaths.insert_plain(conn, jobs)
    else:  # a large batch goes through the engine and is written with one COPY
        made = plans.enqueue(PostgresRows(conn, locking=True), jobs, normal=normalized)
    assert made == expected
    event(f"created {sorted({e.job.state.value for e in made})}")
    both.assert_same_rows()


def test_the_states_the_statements_select_by_are_the_domains(conn: psycopg.Connection[Any]) -> None:
    """Where a partial index is declared on a state, a statement selects by it as a literal
    (a cached plan can use the index only for a literal), and the states it writes come in
    as parameters: every state or outcome a hot statement names is the domain's."""

    def named(text: str) -> set[str]:
        names = {s.value for s in JobState} | {o.value for o in Outcome}
        return {name for name in names if f"'{name}'" in text}

    def definition(signature: str) -> str:
        row = conn.execute("SELECT pg_get_functiondef(%s::regprocedure)", (signature,)).fetchone()
        assert row is not None
        return str(row[0])

    claim = definition("taskyard.claim(text, integer, float8, text[], text[], text, text)")
    heartbeat = definition("taskyard.heartbeat(uuid[], integer[], text[], float8)")
    report = definition(
        "taskyard.report_succeeded(uuid[], integer[], text[], text[], text, text, text)"
    )
    governed = definition(
        "taskyard.claim_governed(text[], text, integer, float8, text[], text[], text, text)"
    )
    # The governed claim selects queued jobs to claim and running ones to count.
    assert named(governed) == {plans.CLAIMABLE.value, plans.LEASED.value}
    assert (named(claim), named(heartbeat), named(report)) == (
        {plans.CLAIMABLE.value},
        {plans.LEASED.value},
        {plans.LEASED.value},
    )
    indexes = dict(
        conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'taskyard'")
    )
    for index, state in (
        ("jobs_claim", plans.CLAIMABLE),
        ("jobs_claim_queue", plans.CLAIMABLE),
        ("jobs_running", plans.LEASED),
    ):
        assert f"WHERE (state = '{state.value}'::text)" in indexes[index], indexes[index]
