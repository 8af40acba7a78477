"""Flow control on every store: a governed queue's claim admits only what its limits allow
(in one claim and across claims), an expired lease gives its capacity back at once, the
rate window is a sliding one, keys take turns and queues share by weight, a paused queue
still claims nothing; `waiting_reason` names each reason; limits are set, read and
removed whole; a concurrency key is kept; hostile limits are refused with the field."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from taskyard.domain.errors import ValidationError
from taskyard.domain.flow import (
    QueueLimits,
    RateLimit,
    WaitingReason,
    check_limits,
    parse_limits,
)
from taskyard.domain.model import Job, JobState
from taskyard.domain.ports import ClaimRequest, JobFilter, JobQuery, JobStore
from taskyard.domain.submission import parse_submission
from tests import factories as f
from tests.contract.conftest import Harness

W = WaitingReason


def claim(
    store: JobStore, limit: int = 100, *, queues: set[str] | None = None, ttl_s: float = 30.0
) -> list[Job]:
    return store.claim(
        ClaimRequest(
            worker="w1",
            limit=limit,
            lease_ttl_s=ttl_s,
            queues=None if queues is None else frozenset(queues),
        )
    )


def finish(store: JobStore, jobs: list[Job]) -> None:
    results = store.report([f.succeed(job) for job in jobs])
    assert all(r.state is JobState.SUCCEEDED for r in results)


# --- settings -----------------------------------------------------------------------------


def test_limits_are_set_read_replaced_whole_and_removed(store: JobStore) -> None:
    assert store.queue_limits() == {}
    first = QueueLimits(
        concurrency_limit=5,
        key_concurrency_limit=2,
        rate_limit=RateLimit(count=10, period_s=1.5),
        key_rate_limit=RateLimit(count=3, period_s=0.25),
        weight=7,
    )
    store.set_queue_limits("a", first)
    store.set_queue_limits("b", QueueLimits(weight=2))
    assert store.queue_limits() == {"a": first, "b": QueueLimits(weight=2)}
    store.set_queue_limits("a", QueueLimits(concurrency_limit=1))
    assert store.queue_limits()["a"] == QueueLimits(concurrency_limit=1)
    store.set_queue_limits("a", QueueLimits())
    assert store.queue_limits() == {"b": QueueLimits(weight=2)}
    [b] = [q for q in store.queues() if q.name == "b"]
    assert b.limits == QueueLimits(weight=2)


@pytest.mark.parametrize(
    "limits",
    [
        QueueLimits(concurrency_limit=0),
        QueueLimits(concurrency_limit=-1),
        QueueLimits(concurrency_limit=10**7),
        QueueLimits(concurrency_limit=True),
        QueueLimits(key_concurrency_limit=2.5),  # type: ignore[arg-type]
        QueueLimits(key_concurrency_limit="3"),  # type: ignore[arg-type]
        QueueLimits(rate_limit=RateLimit(count=0, period_s=1)),
        QueueLimits(rate_limit=RateLimit(count=5, period_s=0.0001)),
        QueueLimits(rate_limit=RateLimit(count=5, period_s=math.nan)),
        QueueLimits(rate_limit=RateLimit(count=5, period_s=math.inf)),
        QueueLimits(key_rate_limit=RateLimit(count=5, period_s=86_401)),
        QueueLimits(key_rate_limit=RateLimit(count=False, period_s=1)),
        QueueLimits(weight=0),
        QueueLimits(weight=1001),
        QueueLimits(weight=None),  # type: ignore[arg-type]
    ],
)
def test_hostile_limits_are_refused_naming_the_field_and_nothing_is_stored(
    store: JobStore, limits: QueueLimits
) -> None:
    with pytest.raises(ValidationError) as caught:
        store.set_queue_limits("q", limits)
    [problem] = caught.value.errors
    assert problem.field.split(".")[0] in (
        "concurrency_limit",
        "key_concurrency_limit",
        "rate_limit",
        "key_rate_limit",
        "weight",
    )
    assert problem.message
    assert store.queue_limits() == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"concurrency_limit": "1"}, "concurrency_limit"),
        ({"concurrency_limit": 1e300}, "concurrency_limit"),
        ({"key_concurrency_limit": -5}, "key_concurrency_limit"),
        ({"rate_limit": {"count": 1}}, "rate_limit"),
        ({"rate_limit": {"count": 1, "period_seconds": "1"}}, "rate_limit.period_seconds"),
        ({"rate_limit": {"count": 1, "period_seconds": 1, "x": 1}}, "rate_limit.x"),
        ({"key_rate_limit": [1, 2]}, "key_rate_limit"),
        ({"key_rate_limit": {"count": 2**64, "period_seconds": 1}}, "key_rate_limit.count"),
        ({"weight": True}, "weight"),
        ({"weight": None}, "weight"),
        ({"speed": 1}, "speed"),
        ({"bad\x00name": 1}, "bad\x00name"),
    ],
)
def test_parse_limits_names_each_bad_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_limits(body)
    assert field in [e.field for e in caught.value.errors]


def test_parse_limits_reads_what_check_limits_accepts() -> None:
    body = {
        "concurrency_limit": 1_000_000,
        "key_concurrency_limit": None,
        "rate_limit": {"count": 1, "period_seconds": 0.001},
        "key_rate_limit": {"count": 1_000_000, "period_seconds": 86_400},
        "weight": 1000,
    }
    limits = parse_limits(body)
    assert check_limits(limits) == limits
    assert limits.to_json() == body
    assert parse_limits({}) == QueueLimits()
    with pytest.raises(ValidationError):
        parse_limits([])


@pytest.mark.parametrize("key", ["", "a\x00", "\ud800", "x" * 201, 5, True, ["k"]])
def test_a_hostile_concurrency_key_is_refused_naming_it(key: object) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_submission({"task": "t", "concurrency_key": key})
    assert [e.field for e in caught.value.errors] == ["concurrency_key"]


def test_the_concurrency_key_is_stored_and_read_back(store: JobStore) -> None:
    job = f.enqueue(store, concurrency_key="tenant-ü/1")
    assert job.concurrency_key == "tenant-ü/1"
    assert store.get(job.id).concurrency_key == "tenant-ü/1"
    assert store.get(job.id).to_json()["concurrency_key"] == "tenant-ü/1"
    [claimed] = claim(store)
    assert claimed.concurrency_key == "tenant-ü/1"
    assert f.enqueue(store).concurrency_key is None


def test_a_concurrency_key_is_part_of_the_idempotent_submission() -> None:
    plain = parse_submission({"task": "t", "idempotency_key": "k"})
    keyed = parse_submission({"task": "t", "idempotency_key": "k", "concurrency_key": "a"})
    assert plain.fingerprint() != keyed.fingerprint()
    assert "concurrency_key" not in plain.canonical()


# --- concurrency --------------------------------------------------------------------------


def test_a_queue_limit_holds_in_one_claim_and_across_claims(store: JobStore) -> None:
    store.set_queue_limits("q", QueueLimits(concurrency_limit=2))
    f.enqueue_many(store, 5, queue="q")
    first = claim(store)
    assert len(first) == 2
    assert claim(store) == []
    finish(store, first[:1])
    assert len(claim(store)) == 1
    assert claim(store) == []
    [info] = [q for q in store.queues() if q.name == "q"]
    assert info.usage.running == 2
    assert info.usage.started_in_window is None


def test_a_key_limit_holds_per_key_and_jobs_without_a_key_take_the_queue_limit_only(
    store: JobStore,
) -> None:
    store.set_queue_limits("q", QueueLimits(key_concurrency_limit=1, concurrency_limit=10))
    for key in ("a", "a", "a", "b", "b", None, None):
        f.enqueue(store, queue="q", concurrency_key=key)
    taken = claim(store)
    assert Counter(job.concurrency_key for job in taken) == {"a": 1, "b": 1, None: 2}
    assert claim(store) == []
    finish(store, [job for job in taken if job.concurrency_key == "a"])
    [again] = claim(store)
    assert again.concurrency_key == "a"


def test_an_expired_lease_gives_its_capacity_back_before_the_reaper_runs(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    store.set_queue_limits("q", QueueLimits(concurrency_limit=1, key_concurrency_limit=1))
    f.enqueue_many(store, 3, queue="q", concurrency_key="k")
    [first] = claim(store, ttl_s=0.2)
    assert claim(store) == []
    store_harness.pass_time(0.3)
    [second] = claim(store)
    assert second.id != first.id
    assert store.get(first.id).state is JobState.RUNNING  # not reaped yet


def test_a_paused_governed_queue_claims_nothing(store: JobStore) -> None:
    store.set_queue_limits("q", QueueLimits(concurrency_limit=5))
    job = f.enqueue(store, queue="q")
    store.set_paused("q", paused=True)
    assert claim(store) == []
    assert claim(store, queues={"q"}) == []
    assert store.waiting_reason(job.id) is W.QUEUE_PAUSED
    store.set_paused("q", paused=False)
    assert [j.id for j in claim(store)] == [job.id]


def test_a_claim_over_governed_and_ungoverned_queues_takes_both_within_the_limit(
    store: JobStore,
) -> None:
    store.set_queue_limits("slow", QueueLimits(concurrency_limit=1))
    f.enqueue_many(store, 3, queue="slow")
    f.enqueue_many(store, 3, queue="free")
    taken = claim(store, 10)
    assert Counter(job.queue for job in taken) == {"slow": 1, "free": 3}
    more = claim(store, 10, queues={"slow", "free"})
    assert more == []


# --- rate ---------------------------------------------------------------------------------


def test_a_rate_limit_admits_count_starts_per_sliding_window(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    period = 0.5
    store.set_queue_limits("q", QueueLimits(rate_limit=RateLimit(count=2, period_s=period)))
    f.enqueue_many(store, 6, queue="q")
    first = claim(store)
    assert len(first) == 2
    finish(store, first)  # finishing frees no rate: starts count, not running jobs
    assert claim(store) == []
    [info] = [q for q in store.queues() if q.name == "q"]
    assert info.usage.started_in_window == 2
    store_harness.pass_time(period + 0.1)
    assert len(claim(store)) == 2
    assert claim(store) == []


def test_the_rate_window_is_exact(store_harness: Harness[JobStore]) -> None:
    """A start `period` ago no longer counts; a start just under it still does."""
    if store_harness.real_time:
        pytest.skip("needs the store's clock to be moved by exact amounts")
    store = store_harness.adapter
    store.set_queue_limits("q", QueueLimits(rate_limit=RateLimit(count=2, period_s=1.0)))
    f.enqueue_many(store, 6, queue="q")
    assert len(claim(store, 1)) == 1
    store_harness.pass_time(0.5)
    assert len(claim(store, 5)) == 1
    store_harness.pass_time(0.499_999)
    assert claim(store) == []  # both starts within (now - 1 s, now]
    store_harness.pass_time(0.000_001)
    assert len(claim(store)) == 1  # the first start is exactly 1 s ago
    assert claim(store) == []
    store_harness.pass_time(0.5)
    assert len(claim(store)) == 1


def test_a_key_rate_limit_holds_per_key(store_harness: Harness[JobStore]) -> None:
    store = store_harness.adapter
    limit = QueueLimits(key_rate_limit=RateLimit(count=1, period_s=0.5))
    store.set_queue_limits("q", limit)
    for key in ("a", "a", "b", "b"):
        f.enqueue(store, queue="q", concurrency_key=key)
    first = claim(store)
    assert sorted(str(job.concurrency_key) for job in first) == ["a", "b"]
    assert claim(store) == []
    queued = JobQuery(filter=JobFilter(states=frozenset({JobState.QUEUED})))
    waiting = store.list_jobs(queued).jobs
    assert len(waiting) == 2
    assert {store.waiting_reason(job.id) for job in waiting} == {W.RATE_LIMIT}
    store_harness.pass_time(0.6)
    assert sorted(str(job.concurrency_key) for job in claim(store)) == ["a", "b"]


# --- fairness -----------------------------------------------------------------------------


def test_keys_take_turns_so_a_large_key_does_not_starve_a_small_one(store: JobStore) -> None:
    store.set_queue_limits("q", QueueLimits(key_concurrency_limit=1000))
    f.enqueue_many(store, 30, queue="q", concurrency_key="big", priority=5)
    small = [f.enqueue(store, queue="q", concurrency_key="small") for _ in range(2)]
    taken = [claim(store, 1)[0] for _ in range(4)]
    assert [job.concurrency_key for job in taken] == ["big", "small", "big", "small"]
    assert {job.id for job in taken} >= {job.id for job in small}


def test_within_a_claim_every_key_gets_its_first_job_before_any_gets_a_second(
    store: JobStore,
) -> None:
    store.set_queue_limits("q", QueueLimits(weight=2))
    f.enqueue_many(store, 10, queue="q", concurrency_key="a")
    f.enqueue_many(store, 10, queue="q", concurrency_key="b")
    f.enqueue_many(store, 1, queue="q", concurrency_key="c")
    taken = claim(store, 5)
    assert Counter(job.concurrency_key for job in taken) == {"a": 2, "b": 2, "c": 1}


def test_queues_share_a_claim_by_weight(store: JobStore) -> None:
    store.set_queue_limits("heavy", QueueLimits(weight=3))
    store.set_queue_limits("light", QueueLimits(weight=1))
    f.enqueue_many(store, 20, queue="heavy")
    f.enqueue_many(store, 20, queue="light")
    taken = claim(store, 8)
    assert Counter(job.queue for job in taken) == {"heavy": 6, "light": 2}
    # Running jobs count: the next claim keeps the shares at 3 to 1.
    again = claim(store, 4)
    assert Counter(job.queue for job in again) == {"heavy": 3, "light": 1}


# --- why a job waits ----------------------------------------------------------------------


def test_waiting_reason_names_each_reason(store_harness: Harness[JobStore]) -> None:
    store = store_harness.adapter
    later = f.enqueue(store, delay_s=3600)
    assert store.waiting_reason(later.id) is W.RUN_AT

    parent = f.enqueue(store, queue="parents")
    child = f.enqueue(store, depends_on=[parent.id])
    assert store.waiting_reason(child.id) is W.DEPENDENCY

    idle = f.enqueue(store, queue="idle")
    assert store.waiting_reason(idle.id) is W.NO_FREE_WORKER
    store.set_paused("idle", paused=True)
    assert store.waiting_reason(idle.id) is W.QUEUE_PAUSED

    store.set_queue_limits("capped", QueueLimits(concurrency_limit=1))
    capped = [f.enqueue(store, queue="capped") for _ in range(2)]
    [capped_running] = claim(store, queues={"capped"})
    [capped_waiting] = [j for j in capped if j.id != capped_running.id]
    assert store.waiting_reason(capped_waiting.id) is W.CONCURRENCY_LIMIT

    store.set_queue_limits("keyed", QueueLimits(key_concurrency_limit=1))
    f.enqueue(store, queue="keyed", concurrency_key="k", priority=10)
    keyed = f.enqueue(store, queue="keyed", concurrency_key="k")
    other = f.enqueue(store, queue="keyed", concurrency_key="other")
    claim(store, 1, queues={"keyed"})
    assert store.waiting_reason(keyed.id) is W.KEY_CONCURRENCY_LIMIT
    assert store.waiting_reason(other.id) is W.NO_FREE_WORKER

    store.set_queue_limits("rated", QueueLimits(rate_limit=RateLimit(count=1, period_s=600)))
    [done] = [f.enqueue(store, queue="rated")]
    rated = f.enqueue(store, queue="rated")
    [first] = claim(store, queues={"rated"})
    finish(store, [first])
    waiting_id = rated.id if first.id == done.id else done.id
    assert store.waiting_reason(waiting_id) is W.RATE_LIMIT

    [running] = claim(store, queues={"parents"})
    assert store.waiting_reason(running.id) is None
    finish(store, [running])
    assert store.waiting_reason(running.id) is None


def test_a_claim_fills_up_to_the_limits_when_a_key_has_only_part_of_its_room(
    store: JobStore,
) -> None:
    store.set_queue_limits("q", QueueLimits(key_concurrency_limit=2, concurrency_limit=5))
    f.enqueue(store, queue="q", concurrency_key="a", priority=9)
    [first] = claim(store, 1)
    assert first.concurrency_key == "a"
    f.enqueue_many(store, 4, queue="q", concurrency_key="a")
    f.enqueue_many(store, 4, queue="q", concurrency_key="b")
    f.enqueue_many(store, 1, queue="q")
    taken = claim(store, 4)
    assert Counter(job.concurrency_key for job in taken) == {"a": 1, "b": 2, None: 1}
    assert claim(store) == []
