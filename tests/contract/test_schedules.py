"""Schedules on every store: rows kept whole, each due fire enqueued once (keyed by the
fire), pauses and resumes, code-declared schedules synced in."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from taskyard.domain import schedules as sch
from taskyard.domain.errors import ScheduleExists, ScheduleNotFound
from taskyard.domain.model import CatchUp, JobState, Overlap
from taskyard.domain.ports import JobFilter, JobQuery, JobStore
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.schedules import Cron, Every, ScheduleSpec
from taskyard.domain.submission import Submission
from tests import factories
from tests.contract.conftest import Harness


def _spec(name: str = "tick", **changes: object) -> ScheduleSpec:
    spec = ScheduleSpec(
        name=name,
        timing=Every(seconds=1),
        job=Submission(
            task="report.send",
            args={"to": "ops", "n": [1, 2]},
            queue="reports",
            priority=4,
            max_attempts=2,
            backoff=RetryPolicy(base_s=0.5, factor=2.0, max_s=9.0, jitter=Jitter.NONE),
            timeout_s=3.5,
        ),
        overlap=Overlap.ALLOW,
    )
    return attrs.evolve(spec, **changes)


def _fired_jobs(store: JobStore) -> list[object]:
    page = store.list_jobs(JobQuery(filter=JobFilter(tasks=frozenset({"report.send"})), limit=100))
    return list(page.jobs)


def test_a_schedule_is_kept_whole_and_listed_by_name(store: JobStore) -> None:
    cron = _spec("b.nightly", timing=Cron(expression="30 2 * * *", timezone="Europe/Berlin"))
    before = store.now()
    made = store.create_schedule(cron)
    store.create_schedule(_spec("a.tick", catch_up=CatchUp.ALL), paused=True)
    assert made.next_fire_at > before and made.spec == cron and not made.paused
    assert [s.name for s in store.schedules()] == ["a.tick", "b.nightly"]
    assert store.schedule("b.nightly") == made
    assert store.schedule("a.tick").paused
    with pytest.raises(ScheduleExists):
        store.create_schedule(cron)
    with pytest.raises(ScheduleNotFound):
        store.schedule("nope")


def test_update_pause_resume_and_delete(store: JobStore) -> None:
    store.create_schedule(_spec())
    changed = store.update_schedule(_spec(overlap=Overlap.SKIP, catch_up_window_s=30.0))
    assert changed.spec.overlap is Overlap.SKIP and store.schedule("tick") == changed
    assert store.pause_schedule("tick", paused=True).paused
    resumed = store.pause_schedule("tick", paused=False)
    assert not resumed.paused and resumed.next_fire_at > store.now() - timedelta(seconds=1)
    store.delete_schedule("tick")
    assert store.schedules() == []
    for call in (
        lambda: store.delete_schedule("tick"),
        lambda: store.update_schedule(_spec()),
        lambda: store.pause_schedule("tick", paused=True),
    ):
        with pytest.raises(ScheduleNotFound):
            call()


def test_a_due_fire_is_enqueued_once_with_its_fire_on_the_job(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    made = store.create_schedule(_spec())
    assert store.fire_schedules(limit=10).fires == (), "nothing due yet"
    store_harness.pass_time(1.05)
    fired = store.fire_schedules(limit=10)
    assert {name for name, _ in fired.fires} == {"tick"}
    # A database's clock may have passed a second fire time meanwhile: `latest` enqueues
    # the newest, and the older one is missed.
    (fire,) = [f for _, f in fired.fires if f.outcome is sch.FireOutcome.ENQUEUED]
    assert fire.fire_at >= made.next_fire_at and fire.job_id is not None
    assert fired.counts.enqueued == 1 and fired.lags_s[0] >= 0
    again = store.fire_schedules(limit=10)
    assert again.fires == (), "a fire is decided once"
    (job,) = _fired_jobs(store)
    assert store.get(job.id) == job
    assert job.id == fire.job_id and job.state is JobState.QUEUED
    assert job.schedule is not None
    assert (job.schedule.name, job.schedule.fire_at) == ("tick", fire.fire_at)
    assert job.idempotency_key == sch.fire_key("tick", fire.fire_at)
    assert (job.queue, job.priority, job.max_attempts, job.timeout_s) == ("reports", 4, 2, 3.5)
    assert job.to_json()["schedule"]["name"] == "tick"
    row = store.schedule("tick")
    assert row.last_fire_at == fire.fire_at and row.last_job_id == job.id
    assert row.recent[-1] == fire and row.counts.enqueued == 1
    assert row.next_fire_at > fire.fire_at


def test_a_fire_already_enqueued_is_not_enqueued_again(store_harness: Harness[JobStore]) -> None:
    """What a retry after an ambiguous commit, or a second leader, meets: the fire's job
    is in the store already. The pass records the fire and makes no second job."""
    store = store_harness.adapter
    made = store.create_schedule(_spec())
    store.enqueue([sch.fire_job(made.spec, made.next_fire_at)])
    store_harness.pass_time(1.05)
    fired = store.fire_schedules(limit=10)
    enqueued = [f for _, f in fired.fires if f.outcome is sch.FireOutcome.ENQUEUED]
    if enqueued[0].fire_at == made.next_fire_at:  # else a database's clock passed it
        assert len(_fired_jobs(store)) == 1


def test_a_paused_schedule_does_not_fire_and_a_resumed_one_does_not_catch_up(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    store.create_schedule(_spec(), paused=True)
    store_harness.pass_time(1.05)
    assert store.fire_schedules(limit=10).fires == ()
    resumed = store.pause_schedule("tick", paused=False)
    assert resumed.next_fire_at > store.now() - timedelta(milliseconds=50)
    assert store.fire_schedules(limit=10).fires == ()
    assert _fired_jobs(store) == []


def test_cancel_previous_cancels_the_open_job(store_harness: Harness[JobStore]) -> None:
    store = store_harness.adapter
    store.create_schedule(_spec(overlap=Overlap.CANCEL_PREVIOUS))
    store_harness.pass_time(1.05)
    (first,) = [f for _, f in store.fire_schedules(limit=10).fires if f.job_id is not None]
    store_harness.pass_time(1.05)
    fired = store.fire_schedules(limit=10)
    assert fired.counts.enqueued == 1
    assert first.job_id is not None and store.get(first.job_id).state is JobState.CANCELLED


def test_sync_creates_replaces_and_leaves_the_undeclared_alone(store: JobStore) -> None:
    store.create_schedule(_spec("from.api"))
    store.create_schedule(_spec("declared"), paused=True)
    changed = _spec("declared", job=Submission(task="report.other"))
    written = store.sync_schedules([changed, _spec("brand.new")])
    assert sorted(s.name for s in written) == ["brand.new", "declared"]
    declared = store.schedule("declared")
    assert declared.spec == changed and declared.paused, "the code wins the spec, not the pause"
    assert [s.name for s in store.schedules()] == ["brand.new", "declared", "from.api"]
    assert store.sync_schedules([changed]) == [], "nothing changed, nothing written"


def test_next_wakeup_names_the_next_fire_of_a_schedule_not_paused(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    assert store.next_wakeup() is None
    store.create_schedule(_spec("paused.one", timing=Every(seconds=5)), paused=True)
    assert store.next_wakeup() is None, "a paused schedule fires at no time"
    tick = store.create_schedule(_spec("every.two", timing=Every(seconds=2)))
    assert store.next_wakeup() == tick.next_fire_at
    delayed = factories.enqueue(store, delay_s=60.0)
    assert store.next_wakeup() == tick.next_fire_at, "the sooner of the fire and the job"
    store.pause_schedule("every.two", paused=True)
    assert store.next_wakeup() == delayed.run_at
    resumed = store.pause_schedule("every.two", paused=False)
    assert store.next_wakeup() == resumed.next_fire_at
    store_harness.pass_time(2.05)
    store.fire_schedules(limit=10)
    moved = store.schedule("every.two")
    assert moved.next_fire_at > resumed.next_fire_at
    assert store.next_wakeup() == moved.next_fire_at, "the fire after the one just made"
