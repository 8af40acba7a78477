"""Random action sequences against the state machine, through the in-memory store.

Rules: submit (with priorities, delays and dependencies), claim, heartbeat, report
(success, retryable and permanent failure) from current and from stale attempts,
checkpoint, cancel, retry, reschedule, release, promote, reap, resolve, and moving the
clock. After every step the invariants are checked:

* every committed change is a legal transition of the table;
* a write from a stale fence or an expired lease is always refused and changes nothing;
* no job passes its attempt budget;
* a claim takes the best jobs by (priority desc, run_at asc, id asc);
* a job only starts when due and when every dependency succeeded.
"""

from __future__ import annotations

import random
from datetime import timedelta
from uuid import UUID

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore, MemoryState
from taskyard.domain.errors import IllegalTransition, StaleFence
from taskyard.domain.ids import uuid7
from taskyard.domain.model import ErrorInfo, Job, JobState, LeaseRef, claim_order_key
from taskyard.domain.ports import ClaimRequest, ReportStatus
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.submission import Submission
from taskyard.domain.transitions import ENQUEUE_TARGETS, Report, ReportKind, allowed
from tests.strategies import priorities

S = JobState
TTL_S = 10.0


class StateMachineRun(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.clock = ManualClock()
        self.state = MemoryState(keep_history=True)
        self.store = InMemoryJobStore(self.clock, state=self.state)
        self.rng = random.Random(0)
        self.ids: list[UUID] = []
        self.refs: list[LeaseRef] = []  # every lease ever handed out, current or not
        self.checked_history = 0

    # --- helpers ------------------------------------------------------------------------

    def _job(self, index: int) -> Job:
        return self.store.get(self.ids[index % len(self.ids)])

    def _ref(self, index: int) -> LeaseRef:
        return self.refs[index % len(self.refs)]

    def _holds(self, ref: LeaseRef) -> bool:
        job = self.store.get(ref.job_id)
        return (
            job.state is S.RUNNING
            and job.attempt == ref.attempt
            and job.lease is not None
            and job.lease.worker == ref.worker
            and self.clock.now() <= job.lease.expires_at
        )

    # --- rules --------------------------------------------------------------------------

    @rule(
        priority=priorities,
        delay_s=st.sampled_from([None, 0.0, 5.0, 30.0]),
        max_attempts=st.integers(min_value=1, max_value=3),
        deps=st.lists(st.integers(min_value=0, max_value=50), max_size=2),
    )
    def submit(
        self, priority: int, delay_s: float | None, max_attempts: int, deps: list[int]
    ) -> None:
        depends_on = tuple(sorted({self.ids[d % len(self.ids)] for d in deps})) if self.ids else ()
        submission = Submission(
            task="t",
            priority=priority,
            delay_s=delay_s,
            max_attempts=max_attempts,
            backoff=RetryPolicy(base_s=1.0, jitter=Jitter.NONE),
            depends_on=depends_on,
        )
        new = submission.to_new_job(job_id=uuid7(self.clock.now(), self.rng))
        [created] = self.store.enqueue([new])
        assert created.job.state in ENQUEUE_TARGETS
        self.ids.append(created.job.id)

    @rule(limit=st.integers(min_value=1, max_value=4), worker=st.sampled_from(["w1", "w2"]))
    def claim(self, limit: int, worker: str) -> None:
        now = self.clock.now()
        with self.state.lock:
            claimable = sorted(
                (
                    job
                    for job in self.state.jobs.values()
                    if job.state is S.QUEUED and job.run_at <= now
                ),
                key=claim_order_key,
            )
        jobs = self.store.claim(ClaimRequest(worker=worker, limit=limit, lease_ttl_s=TTL_S))
        assert [j.id for j in jobs] == [j.id for j in claimable[:limit]]
        for job in jobs:
            for dep in job.depends_on:
                assert self.store.get(dep).state is S.SUCCEEDED, "started before a dependency"
            assert job.run_at <= now, "started before its run_at"
            self.refs.append(job.ref())

    @precondition(lambda self: self.refs)
    @rule(
        index=st.integers(min_value=0),
        kind=st.sampled_from(list(ReportKind)),
        retryable=st.booleans(),
    )
    def report(self, index: int, kind: ReportKind, retryable: bool) -> None:
        ref = self._ref(index)
        before = self.store.get(ref.job_id)
        live = self._holds(ref)
        error = None if kind is ReportKind.SUCCEEDED else ErrorInfo(type="E", message="m")
        [result] = self.store.report(
            [Report(ref=ref, kind=kind, error=error, retryable=retryable, retry_delay_s=1.0)]
        )
        if not live:
            assert result.status in (ReportStatus.STALE, ReportStatus.ALREADY_APPLIED)
            assert self.store.get(ref.job_id) == before, "a stale write changed the job"
        else:
            assert result.status is ReportStatus.APPLIED

    @precondition(lambda self: self.refs)
    @rule(index=st.integers(min_value=0))
    def heartbeat(self, index: int) -> None:
        ref = self._ref(index)
        before = self.store.get(ref.job_id)
        live = self._holds(ref)
        [status] = self.store.heartbeat([ref], lease_ttl_s=TTL_S)
        assert status.held == live
        if not live:
            assert self.store.get(ref.job_id) == before

    @precondition(lambda self: self.refs)
    @rule(index=st.integers(min_value=0))
    def checkpoint(self, index: int) -> None:
        ref = self._ref(index)
        before = self.store.get(ref.job_id)
        live = self._holds(ref)
        try:
            self.store.checkpoint(ref, {"at": index})
        except StaleFence:
            assert not live
            assert self.store.get(ref.job_id) == before
        else:
            assert live

    @precondition(lambda self: self.refs)
    @rule(index=st.integers(min_value=0))
    def release(self, index: int) -> None:
        ref = self._ref(index)
        before = self.store.get(ref.job_id)
        live = self._holds(ref)
        [result] = self.store.release([ref])
        assert (result.status is ReportStatus.APPLIED) == live
        if not live:
            assert self.store.get(ref.job_id) == before

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(min_value=0))
    def cancel(self, index: int) -> None:
        job = self._job(index)
        try:
            self.store.cancel(job.id)
        except IllegalTransition:
            assert job.state in (S.SUCCEEDED, S.DEAD)

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(min_value=0))
    def retry(self, index: int) -> None:
        job = self._job(index)
        try:
            retried = self.store.retry(job.id)
        except IllegalTransition:
            assert job.state not in (S.DEAD, S.CANCELLED)
        else:
            assert retried.attempt_limit == job.attempt + job.max_attempts

    @precondition(lambda self: self.ids)
    @rule(
        index=st.integers(min_value=0),
        priority=priorities,
        delay_s=st.sampled_from([None, -5.0, 20.0]),
    )
    def reschedule(self, index: int, priority: int, delay_s: float | None) -> None:
        job = self._job(index)
        run_at = None if delay_s is None else self.clock.now() + timedelta(seconds=delay_s)
        try:
            self.store.reschedule(job.id, priority=priority, run_at=run_at)
        except IllegalTransition:
            assert job.state not in (S.SCHEDULED, S.QUEUED, S.RETRYING)

    @rule()
    def scheduler_pass(self) -> None:
        self.store.resolve_dependencies(limit=100)
        self.store.promote_due(limit=100)
        self.store.reap_expired(limit=100)

    @rule(seconds=st.sampled_from([0.5, 3.0, 11.0, 40.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def every_change_is_a_legal_transition(self) -> None:
        history = self.state.history
        assert history is not None
        for entry in history[self.checked_history :]:
            if entry.before is None:
                assert entry.after.state in ENQUEUE_TARGETS
            else:
                assert entry.after.state in allowed(entry.before.state, entry.event), entry
                assert entry.after.attempt >= entry.before.attempt, "the fence only grows"
        self.checked_history = len(history)

    @invariant()
    def no_job_passes_its_attempt_budget(self) -> None:
        with self.state.lock:
            for job in self.state.jobs.values():
                assert job.attempt <= job.attempt_limit, job
                assert len(self.state.attempts[job.id]) == job.attempt

    @invariant()
    def running_means_one_open_attempt_with_a_lease(self) -> None:
        with self.state.lock:
            for job in self.state.jobs.values():
                if job.state is S.RUNNING:
                    assert job.lease is not None
                    assert self.state.attempts[job.id][-1].attempt == job.attempt
                else:
                    assert job.lease is None
                if job.state.is_terminal:
                    assert job.finished_at is not None


StateMachineRun.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_state_machine = StateMachineRun.TestCase
