"""The count of a bulk action (the API's `dry_run`), as a property over jobs in any state:
exact, it is what the action then changes; past its bound, a lower bound that says so."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.management import BULK_STATES, EVERY_JOB_CHANGED, changed_by, count_bulk
from taskyard.domain.ports import ClaimRequest, JobFilter, JobQuery, JobStore
from tests import factories as f
from tests.strategies import bulk_requests, job_fates

WAITING = ("queued", "scheduled", "cancelled")


def _populate(store: JobStore, fates: list[tuple[str, str, str]]) -> None:
    """The jobs that run are made (and claimed) first, so each claim takes the job just made."""
    for queue, task, fate in sorted(fates, key=lambda shape: shape[2] in WAITING):
        if fate == "scheduled":
            f.enqueue(store, queue=queue, task=task, delay_s=600)
            continue
        job = f.enqueue(store, queue=queue, task=task)
        if fate == "queued":
            continue
        if fate == "cancelled":
            store.cancel(job.id)
            continue
        [claimed] = store.claim(
            ClaimRequest(
                worker="w1", limit=1, lease_ttl_s=60, queues=frozenset({queue}),
                tasks=frozenset({task}),
            )
        )  # fmt: skip
        assert claimed.id == job.id
        if fate == "asked":
            store.cancel(job.id)
        elif fate != "running":
            report = {
                "retrying": f.fail(claimed, delay_s=600),
                "dead": f.fail(claimed, retryable=False),
                "succeeded": f.succeed(claimed),
            }[fate]
            store.report([report])


def _matching(store: JobStore, action: str, job_filter: JobFilter) -> int:
    """How many jobs the count's listing holds (the filter, in the action's states where
    not every job changes)."""
    states = (job_filter.states or BULK_STATES[action]) - EVERY_JOB_CHANGED[action]  # type: ignore[index]
    if not states:
        return 0
    listing = JobQuery(filter=JobFilter(states=states, queues=job_filter.queues,
                                        tasks=job_filter.tasks), limit=1000)  # fmt: skip
    return len(store.list_jobs(listing).jobs)


@given(fates=job_fates, request=bulk_requests(), scan_max=st.integers(1, 30))
def test_a_bulk_count_is_exact_or_says_it_is_a_lower_bound(
    fates: list[tuple[str, str, str]], request: tuple[str, JobFilter], scan_max: int
) -> None:
    action, job_filter = request
    store = InMemoryJobStore(ManualClock())
    _populate(store, fates)
    matching = _matching(store, action, job_filter)
    counted = count_bulk(store, job_filter, action=action, scan_max=scan_max)  # type: ignore[arg-type]
    changed = (store.retry_many if action == "retry" else store.cancel_many)(job_filter)
    assert counted.exact == (matching <= scan_max)
    if counted.exact:
        assert counted.count == changed
    else:
        assert counted.count <= changed


@given(fates=job_fates)
def test_in_the_states_counted_whole_the_action_changes_every_job(
    fates: list[tuple[str, str, str]],
) -> None:
    store = InMemoryJobStore(ManualClock())
    _populate(store, fates)
    now = store.now()
    for job in store.list_jobs(JobQuery(limit=1000)).jobs:
        for action, states in EVERY_JOB_CHANGED.items():
            if job.state in states:
                assert changed_by(job, action, now=now), (action, job)
