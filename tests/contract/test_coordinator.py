"""The `Coordinator` contract: every adapter (memory, Redis) passes it unchanged."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from uuid import UUID

from taskyard.domain.ports import SCHEDULER_BELL, Coordinator, SchedulerInfo, WorkerInfo
from tests.contract.conftest import Harness

TTL_S = 0.3


def _worker(worker_id: str, **kwargs: object) -> WorkerInfo:
    now = datetime.now(UTC)
    defaults: dict[str, object] = {
        "host": "h1",
        "pid": 42,
        "queues": ("a", "b"),
        "concurrency": 4,
        "started_at": now,
        "last_heartbeat_at": now,
        "running_job_ids": (),
    }
    defaults.update(kwargs)
    return WorkerInfo(id=worker_id, **defaults)  # type: ignore[arg-type]


def test_one_candidate_leads_and_renews_with_the_same_term(coordinator: Coordinator) -> None:
    first = coordinator.campaign(candidate="s1", ttl_s=30)
    assert first is not None and first.holder == "s1"
    assert coordinator.campaign(candidate="s2", ttl_s=30) is None
    renewed = coordinator.campaign(candidate="s1", ttl_s=30)
    assert renewed is not None and renewed.term == first.term
    leader = coordinator.leader()
    assert leader is not None and leader.holder == "s1" and leader.term == first.term


def test_the_lease_passes_on_with_a_greater_term_when_not_renewed(
    coordinator_harness: Harness[Coordinator],
) -> None:
    coordinator = coordinator_harness.adapter
    first = coordinator.campaign(candidate="s1", ttl_s=TTL_S)
    assert first is not None
    coordinator_harness.pass_time(TTL_S * 2)
    second = coordinator.campaign(candidate="s2", ttl_s=30)
    assert second is not None and second.holder == "s2"
    assert second.term > first.term
    # The old holder, waking up, can neither renew nor release the new lease.
    assert coordinator.campaign(candidate="s1", ttl_s=30) is None
    assert coordinator.resign(candidate="s1") is False
    leader = coordinator.leader()
    assert leader is not None and leader.holder == "s2"


def test_resign_frees_the_lease_for_another(coordinator: Coordinator) -> None:
    first = coordinator.campaign(candidate="s1", ttl_s=30)
    assert first is not None
    assert coordinator.resign(candidate="s1") is True
    assert coordinator.leader() is None
    second = coordinator.campaign(candidate="s2", ttl_s=30)
    assert second is not None and second.term > first.term


def test_workers_are_listed_until_their_ttl_lapses(
    coordinator_harness: Harness[Coordinator],
) -> None:
    coordinator = coordinator_harness.adapter
    coordinator.register_worker(_worker("w1"), ttl_s=TTL_S)
    coordinator.register_worker(_worker("w2", queues=()), ttl_s=30)
    listed = {w.id: w for w in coordinator.workers()}
    assert set(listed) == {"w1", "w2"}
    assert listed["w1"].queues == ("a", "b") and listed["w1"].concurrency == 4
    assert listed["w1"].host == "h1" and listed["w1"].pid == 42
    coordinator_harness.pass_time(TTL_S * 2)
    assert [w.id for w in coordinator.workers()] == ["w2"]
    coordinator.unregister_worker("w2")
    assert coordinator.workers() == []


def test_a_heartbeat_refreshes_the_worker_record(coordinator: Coordinator) -> None:
    coordinator.register_worker(_worker("w1"), ttl_s=30)
    job_ids = ("0190c2d4-0000-7000-8000-000000000001",)
    coordinator.register_worker(
        _worker("w1", running_job_ids=tuple(UUID(j) for j in job_ids)), ttl_s=30
    )
    [worker] = coordinator.workers()
    assert [str(j) for j in worker.running_job_ids] == list(job_ids)


def test_schedulers_are_listed_with_the_leader_marked(coordinator: Coordinator) -> None:
    now = datetime.now(UTC)
    lead = coordinator.campaign(candidate="s1", ttl_s=30)
    assert lead is not None
    for sid in ("s1", "s2"):
        coordinator.register_scheduler(
            SchedulerInfo(id=sid, host="h", pid=1, last_heartbeat_at=now), ttl_s=30
        )
    listed = {s.id: s for s in coordinator.schedulers()}
    assert listed["s1"].leader and listed["s1"].term == lead.term
    assert not listed["s2"].leader
    coordinator.unregister_scheduler("s2")
    assert [s.id for s in coordinator.schedulers()] == ["s1"]


def test_a_ring_before_the_wait_is_not_lost(coordinator: Coordinator) -> None:
    coordinator.ring(["mail"])
    started = time.monotonic()
    assert coordinator.wait(["mail"], timeout_s=5) is True
    assert time.monotonic() - started < 2


def test_a_wait_without_a_ring_times_out(coordinator: Coordinator) -> None:
    coordinator.ring(["other"])
    started = time.monotonic()
    assert coordinator.wait(["mail"], timeout_s=0.2) is False
    assert time.monotonic() - started >= 0.15


def test_a_ring_wakes_a_waiter_on_another_thread(coordinator: Coordinator) -> None:
    woke: list[bool] = []
    ready = threading.Event()

    def waiter() -> None:
        ready.set()
        woke.append(coordinator.wait(["mail", "sms"], timeout_s=10))

    thread = threading.Thread(target=waiter)
    thread.start()
    ready.wait(5)
    deadline = time.monotonic() + 5
    # Ring until the waiter is woken: it may not be blocked yet when the first ring goes out.
    while thread.is_alive() and time.monotonic() < deadline:
        coordinator.ring(["sms"])
        thread.join(timeout=0.05)
    assert woke == [True]


def test_waiting_on_every_queue_wakes_on_any_ring(coordinator: Coordinator) -> None:
    coordinator.ring(["whatever"])
    assert coordinator.wait(None, timeout_s=5) is True


def test_a_pending_ring_wakes_one_later_wait_only(coordinator: Coordinator) -> None:
    coordinator.ring(["mail"])
    assert coordinator.wait(["mail"], timeout_s=5) is True
    # The first waiter took the ring (it is about to look at the store): no second wake-up.
    assert coordinator.wait(["mail"], timeout_s=0.1) is False


def test_waiting_on_no_queue_lasts_its_timeout(coordinator: Coordinator) -> None:
    coordinator.ring(["mail"])
    started = time.monotonic()
    assert coordinator.wait([], timeout_s=0.2) is False
    assert time.monotonic() - started >= 0.15


def test_a_zero_timeout_only_looks_for_a_pending_ring(coordinator: Coordinator) -> None:
    assert coordinator.wait(["mail"], timeout_s=0) is False
    coordinator.ring(["mail"])
    assert coordinator.wait(["mail"], timeout_s=0) is True


def test_schedulers_are_listed_until_their_ttl_lapses(
    coordinator_harness: Harness[Coordinator],
) -> None:
    coordinator = coordinator_harness.adapter
    now = datetime.now(UTC)
    coordinator.register_scheduler(
        SchedulerInfo(id="s1", host="h", pid=1, last_heartbeat_at=now), ttl_s=TTL_S
    )
    coordinator.register_scheduler(
        SchedulerInfo(id="s2", host="h", pid=2, last_heartbeat_at=now), ttl_s=30
    )
    assert [s.id for s in coordinator.schedulers()] == ["s1", "s2"]
    coordinator_harness.pass_time(TTL_S * 2)
    assert [s.id for s in coordinator.schedulers()] == ["s2"]


def test_terms_keep_growing_over_many_handovers(coordinator: Coordinator) -> None:
    terms = []
    for round_number in range(5):
        candidate = f"s{round_number % 2}"
        lead = coordinator.campaign(candidate=candidate, ttl_s=30)
        assert lead is not None
        terms.append(lead.term)
        assert coordinator.resign(candidate=candidate) is True
    assert terms == sorted(set(terms))


A, B, C = (UUID(int=n) for n in (1, 2, 3))


def test_an_announcement_after_the_mark_is_heard(coordinator: Coordinator) -> None:
    mark = coordinator.finished_mark()
    coordinator.announce_finished([B])
    coordinator.announce_finished([A, C])
    heard = coordinator.wait_finished([A], after=mark, timeout_s=5)
    assert heard.finished == {A}
    # Waiting on from the new mark: the announcements already heard are not heard again.
    assert coordinator.wait_finished([A], after=heard.mark, timeout_s=0.1).finished == set()


def test_an_announcement_before_the_mark_is_not_heard(coordinator: Coordinator) -> None:
    coordinator.announce_finished([A])
    mark = coordinator.finished_mark()
    quiet = coordinator.wait_finished([A, B], after=mark, timeout_s=0.2)
    assert quiet.finished == set()
    coordinator.announce_finished([B])
    assert coordinator.wait_finished([A, B], after=quiet.mark, timeout_s=5).finished == {B}


def test_announcements_of_other_jobs_only_move_the_mark(coordinator: Coordinator) -> None:
    mark = coordinator.finished_mark()
    coordinator.announce_finished([B, C])
    heard = coordinator.wait_finished([A], after=mark, timeout_s=0.2)
    assert heard.finished == set() and heard.mark != mark
    coordinator.announce_finished([])  # nothing to announce: nothing happens
    assert coordinator.finished_mark() == heard.mark


def test_every_waiter_hears_an_announcement(coordinator: Coordinator) -> None:
    mark = coordinator.finished_mark()
    heard: list[frozenset[UUID]] = []

    def waiter() -> None:
        heard.append(coordinator.wait_finished([A], after=mark, timeout_s=10).finished)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for thread in threads:
        thread.start()
    coordinator.announce_finished([A])
    for thread in threads:
        thread.join(15)
    assert heard == [frozenset({A})] * 3


def test_a_large_announcement_is_heard_whole(coordinator: Coordinator) -> None:
    many = [UUID(int=n) for n in range(10, 1010)]
    mark = coordinator.finished_mark()
    coordinator.announce_finished(many)
    assert coordinator.wait_finished(many, after=mark, timeout_s=5).finished == set(many)


def test_the_schedulers_bell_wakes_only_a_wait_that_names_it(coordinator: Coordinator) -> None:
    coordinator.ring([SCHEDULER_BELL])
    assert coordinator.wait(None, timeout_s=0) is False, "no worker of every queue wakes"
    assert coordinator.wait(["mail"], timeout_s=0) is False
    assert coordinator.wait([SCHEDULER_BELL], timeout_s=5) is True
    coordinator.ring(["mail", SCHEDULER_BELL])
    assert coordinator.wait(None, timeout_s=5) is True, "a queue's ring still wakes them"
    assert coordinator.wait([SCHEDULER_BELL], timeout_s=5) is True
