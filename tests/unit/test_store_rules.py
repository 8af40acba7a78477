"""The states and outcomes the store's statements are given come from the state machine.

The engine and PostgreSQL's set-based hot paths are handed `plans.CLAIMABLE`, `LEASED`,
`CREATED_DUE`, `CREATED_WAITING` and `OPEN` instead of writing state names of their own;
here those names are held to `TRANSITIONS` and to `transitions.create`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from taskyard.domain import transitions as t
from taskyard.domain.model import COMMITTED_OUTCOMES, JobState, NewJob, Outcome
from taskyard.domain.retry import RetryPolicy
from taskyard.domain.store import plans

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _new(**fields: object) -> NewJob:
    values: dict[str, object] = {
        "id": UUID(int=1),
        "task": "t",
        "args": {},
        "queue": "q",
        "priority": 0,
        "run_at": None,
        "delay_s": None,
        "max_attempts": 1,
        "backoff": RetryPolicy(),
        "timeout_s": None,
        "idempotency_key": None,
        "depends_on": (),
        "correlation_id": None,
        "fingerprint": None,
    }
    values.update(fields)
    return NewJob(**values)  # type: ignore[arg-type]


def test_a_claim_takes_claimable_jobs_and_leaves_them_leased() -> None:
    assert t.allowed(plans.CLAIMABLE, t.Event.CLAIM) == {plans.LEASED}
    assert [s for s in JobState if t.allowed(s, t.Event.CLAIM)] == [plans.CLAIMABLE]
    assert [s for s in JobState if t.allowed(s, t.Event.HEARTBEAT)] == [plans.LEASED]
    assert JobState.SUCCEEDED in t.allowed(plans.LEASED, t.Event.COMPLETE)


def test_a_new_job_is_created_due_or_waiting_as_create_decides() -> None:
    due = t.create(_new(), now=NOW, dependency_states={})
    at_now = t.create(_new(run_at=NOW), now=NOW, dependency_states={})
    ahead = t.create(_new(delay_s=0.001), now=NOW, dependency_states={})
    assert (due.state, at_now.state) == (plans.CREATED_DUE, plans.CREATED_DUE)
    assert ahead.state is plans.CREATED_WAITING and ahead.run_at == NOW + timedelta(seconds=0.001)
    assert {plans.CREATED_DUE, plans.CREATED_WAITING} <= t.ENQUEUE_TARGETS


def test_an_open_attempt_record_is_one_no_outcome_has_closed() -> None:
    assert plans.OPEN is Outcome.RUNNING and plans.OPEN not in COMMITTED_OUTCOMES


def test_the_bulk_changes_select_what_the_table_lets_them_change() -> None:
    assert {s for s in JobState if t.allowed(s, t.Event.RETRY)} == plans.RETRYABLE
    assert {s for s in JobState if t.allowed(s, t.Event.CANCEL)} - {
        JobState.CANCELLED
    } == plans.ACTIVE
    assert plans.PROMOTABLE.states == {s for s in JobState if t.allowed(s, t.Event.PROMOTE)}
    assert plans.PROMOTABLE.gated in plans.PROMOTABLE.states
    assert {s for s in JobState if t.allowed(s, t.Event.DEPENDENCY_FAILED)} == {
        plans.PROMOTABLE.gated
    }
