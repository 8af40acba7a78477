"""A bulk action's count (`count_bulk`, the API's `dry_run`) agrees with what the store's
`cancel_many` / `retry_many` then change, on every store: the count lists jobs through the
store and judges each by the action's own transition, so a store whose listing and bulk
statements disagreed would show here."""

from __future__ import annotations

from taskyard.domain.management import BulkAction, count_bulk
from taskyard.domain.model import JobState
from taskyard.domain.ports import JobFilter, JobQuery, JobStore
from tests import factories as f
from tests.contract.test_job_store_more import claim

S = JobState
SHAPES = [(queue, task) for queue in ("a", "b") for task in ("t1", "t2")]


def _every_state(store: JobStore) -> None:
    """Jobs of two queues and two tasks in every state, and a running job asked to stop."""
    for queue, task in SHAPES:
        for _ in range(5):
            f.enqueue(store, queue=queue, task=task, max_attempts=2)
    running = claim(store, limit=100)
    assert len(running) == 5 * len(SHAPES)
    reports = []
    for index, job in enumerate(running):
        kind = index % 5
        if kind == 1:
            store.cancel(job.id)  # stays running, cancel_requested
        elif kind == 2:
            reports.append(f.fail(job, delay_s=600))  # retrying
        elif kind == 3:
            reports.append(f.fail(job, retryable=False))  # dead
        elif kind == 4:
            reports.append(f.succeed(job))
    store.report(reports)
    for queue, task in SHAPES:
        f.enqueue(store, queue=queue, task=task)
        f.enqueue(store, queue=queue, task=task, delay_s=600)
        store.cancel(f.enqueue(store, queue=queue, task=task, delay_s=600).id)
    states = {job.state for job in store.list_jobs(JobQuery(limit=1000)).jobs}
    assert states == set(JobState)


def _filter(
    states: tuple[JobState, ...] = (), queues: tuple[str, ...] = (), tasks: tuple[str, ...] = ()
) -> JobFilter:
    return JobFilter(states=frozenset(states), queues=frozenset(queues), tasks=frozenset(tasks))


STEPS: list[tuple[BulkAction, JobFilter]] = [
    ("retry", _filter(states=(S.DEAD,))),
    ("cancel", _filter(queues=("a",))),
    ("cancel", _filter(states=(S.RUNNING,), tasks=("t2",))),
    ("retry", _filter(queues=("b",), tasks=("t1",))),
    ("cancel", _filter(tasks=("t1",))),
    ("retry", _filter(states=(S.CANCELLED,))),
    ("cancel", _filter(states=(S.SCHEDULED, S.QUEUED, S.RETRYING, S.RUNNING))),
]


def test_the_count_of_a_bulk_action_is_what_the_action_then_changes(store: JobStore) -> None:
    _every_state(store)
    for action, job_filter in STEPS:
        counted = count_bulk(store, job_filter, action=action)
        again = count_bulk(store, job_filter, action=action)
        changed = (store.retry_many if action == "retry" else store.cancel_many)(job_filter)
        assert (counted.count, counted.exact) == (changed, True), (action, job_filter)
        assert again == counted, "counting changes nothing"


def test_a_count_that_looks_at_fewer_jobs_than_match_is_a_lower_bound(store: JobStore) -> None:
    _every_state(store)
    cancellable = _filter(queues=("a", "b"))
    full = count_bulk(store, cancellable, action="cancel")
    # 20 unfinished jobs match: 8 running (4 of them asked to stop already, which a cancel
    # leaves alone), 4 retrying, 4 queued, 4 scheduled. Only the running ones are looked at
    # one by one; the 12 others are counted whole.
    assert (full.count, full.exact) == (16, True)
    for scan_max in (1, 7):
        part = count_bulk(store, cancellable, action="cancel", scan_max=scan_max)
        assert not part.exact and 12 <= part.count <= 12 + min(scan_max, 4)
    assert count_bulk(store, cancellable, action="cancel", scan_max=8) == full
    retry = count_bulk(store, _filter(states=(S.DEAD, S.CANCELLED)), action="retry", scan_max=1)
    assert retry.exact and retry.count == len(
        store.list_jobs(JobQuery(filter=_filter(states=(S.DEAD, S.CANCELLED)), limit=1000)).jobs
    )
