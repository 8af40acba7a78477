"""The chaos test's own parts, on their own: the seeded schedules replay, the nemesis keeps
the reaper alive while a dead worker's jobs wait, and the figures count what they say."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from uuid import UUID

import attrs

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.model import Attempt, ErrorInfo, Job, JobState, Outcome
from taskyard.domain.timefmt import after
from tests.chaos import figures
from tests.chaos.mix import CHAIN_LENGTH_MAX, Kind, plan_mix
from tests.chaos.nemesis import FaultKind, FaultRecord, Nemesis, PlannedFault, plan_faults
from tests.eventually import eventually
from tests.factories import enqueue

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LOST = ErrorInfo(type="worker_lost", message="the lease expired")


def _faults(seed: int, count: int) -> list[PlannedFault]:
    return list(itertools.islice(plan_faults(seed, workers=4, lease_ttl_s=2.0), count))


def test_the_same_seed_gives_the_same_fault_schedule_and_another_seed_another() -> None:
    assert _faults(7, 30) == _faults(7, 30)
    assert _faults(7, 30) != _faults(8, 30)


def test_every_round_of_the_schedule_holds_every_kind_of_fault_once() -> None:
    faults = _faults(11, 4 * len(FaultKind))
    for start in range(0, len(faults), len(FaultKind)):
        assert {f.kind for f in faults[start : start + len(FaultKind)]} == set(FaultKind)
    for fault in faults:
        assert 0 <= fault.worker < 4
        if fault.kind is FaultKind.PAUSE_WORKER:
            assert fault.hold_s > 2.0, "a pause outlasts the lease"


def test_the_same_seed_gives_the_same_mix_and_dependencies_point_back() -> None:
    plan = plan_mix(5, total=1000, queue="q", tag="t")
    assert plan == plan_mix(5, total=1000, queue="q", tag="t")
    assert {item.kind for item in plan} == set(Kind)
    assert len({item.key for item in plan}) == 1000
    links: Counter[int] = Counter()
    for item in plan:
        if item.after is None:
            continue
        assert item.after < item.index
        parent = plan[item.after].kind
        if item.kind is Kind.ORPHAN:
            assert parent is Kind.DOOMED
        else:
            assert item.kind is Kind.CHAIN and parent is Kind.CHAIN
            links[item.index] = links[item.after] + 1
    assert max(links.values()) == CHAIN_LENGTH_MAX - 1


class _FakeCluster:
    """Records when each fault struck, by the wall clock; nothing is really killed."""

    def __init__(self) -> None:
        self.struck: list[tuple[str, datetime]] = []

    def store_now(self) -> datetime:
        return datetime.now(UTC)

    def worker_id(self, slot: int) -> str:
        return f"w{slot}"

    def kill_worker(self, slot: int) -> None:
        self.struck.append(("kill_worker", datetime.now(UTC)))

    def signal_worker(self, slot: int, signum: int) -> None:
        pass

    def wait_leader(self) -> str:
        return "s1"

    def kill_scheduler(self, scheduler_id: str) -> None:
        self.struck.append(("kill_leader", datetime.now(UTC)))

    def wait_leader_other_than(self, scheduler_id: str) -> str:
        return "s2"

    def stop_redis(self) -> None:
        pass

    def start_redis(self) -> None:
        pass

    def flush_redis(self) -> None:
        pass

    def terminate_backends(self) -> int:
        return 3


def test_the_leader_is_not_killed_while_a_dead_workers_jobs_wait_to_be_reaped() -> None:
    schedule = [
        PlannedFault(number=1, kind=FaultKind.KILL_WORKER, gap_s=0.0, worker=0, hold_s=0.0),
        PlannedFault(number=2, kind=FaultKind.KILL_LEADER, gap_s=0.0, worker=0, hold_s=0.0),
        PlannedFault(number=3, kind=FaultKind.TERMINATE_BACKENDS, gap_s=0.0, worker=0, hold_s=0),
    ]
    cluster = _FakeCluster()
    nemesis = Nemesis(cluster, iter(schedule), worker_recovery_s=0.4, say=lambda _: None)
    nemesis.start()
    records = _wait_records(nemesis, 3)
    assert [r.kind for r in records] == [f.kind for f in schedule]
    (_, worker_at), (_, leader_at) = cluster.struck
    assert (leader_at - worker_at).total_seconds() >= 0.4
    assert records[0].target == "w0" and records[1].target == "s1"
    assert records[2].count == 3


def _wait_records(nemesis: Nemesis, count: int) -> list[FaultRecord]:
    eventually(lambda: len(nemesis.records) >= count, timeout_s=10, what="the faults")
    return nemesis.stop()


def _job(job_id: UUID, *, state: JobState, attempt: int, finished_at: datetime | None) -> Job:
    job = enqueue(InMemoryJobStore(ManualClock(T0)), max_attempts=3)
    return attrs.evolve(job, id=job_id, state=state, attempt=attempt, finished_at=finished_at)


def _attempt(
    job_id: UUID, n: int, worker: str, start_s: float, end_s: float, outcome: Outcome
) -> Attempt:
    return Attempt(
        job_id=job_id,
        attempt=n,
        worker=worker,
        started_at=after(T0, start_s),
        lease_expires_at=after(T0, start_s + 2),
        finished_at=after(T0, end_s),
        outcome=outcome,
        error=LOST if outcome is Outcome.WORKER_LOST else None,
    )


def _fault(kind: FaultKind, target: str, at_s: float) -> FaultRecord:
    planned = PlannedFault(number=1, kind=kind, gap_s=0, worker=0, hold_s=0)
    return FaultRecord(planned=planned, at=after(T0, at_s), target=target)


def test_a_lost_attempt_waits_from_its_workers_fault_until_the_job_moves_on() -> None:
    rerun, ended, stray = UUID(int=1), UUID(int=2), UUID(int=3)
    attempts = {
        rerun: [
            _attempt(rerun, 1, "w1", 0.0, 3.0, Outcome.WORKER_LOST),
            _attempt(rerun, 2, "w2", 3.25, 3.5, Outcome.SUCCEEDED),
        ],
        ended: [_attempt(ended, 1, "w1", 0.5, 3.0, Outcome.WORKER_LOST)],
        stray: [_attempt(stray, 1, "w3", 0.0, 2.5, Outcome.WORKER_LOST)],
    }
    jobs = {
        rerun: _job(rerun, state=JobState.SUCCEEDED, attempt=2, finished_at=after(T0, 3.5)),
        ended: _job(ended, state=JobState.CANCELLED, attempt=1, finished_at=after(T0, 3.0)),
        stray: _job(stray, state=JobState.DEAD, attempt=1, finished_at=after(T0, 2.5)),
    }
    faults = [
        _fault(FaultKind.KILL_WORKER, "w1", 1.0),
        _fault(FaultKind.KILL_WORKER, "w3", -1.0),  # before its attempt began: not its cause
        _fault(FaultKind.KILL_LEADER, "w3", 1.0),  # not a worker fault
    ]
    waits = figures.waits_after_worker_faults(faults, jobs, attempts)
    assert sorted((w.job_id, w.how, round(w.wait_s, 3)) for w in waits.waits) == [
        (rerun, "next attempt", 2.25),
        (ended, "job ended", 2.0),
    ]
    assert waits.longest is not None and waits.longest.job_id == rerun
    assert [a.job_id for a in waits.unexplained] == [stray]


def test_a_second_ending_outcome_counts_as_committed_twice() -> None:
    once, twice = UUID(int=1), UUID(int=2)
    attempts = {
        once: [
            _attempt(once, 1, "w1", 0, 1, Outcome.FAILED),
            _attempt(once, 2, "w1", 1, 2, Outcome.WORKER_LOST),
            _attempt(once, 3, "w1", 2, 3, Outcome.SUCCEEDED),
        ],
        twice: [
            _attempt(twice, 1, "w1", 0, 1, Outcome.SUCCEEDED),
            _attempt(twice, 2, "w2", 0, 1, Outcome.SUCCEEDED),
        ],
    }
    jobs = {
        once: _job(once, state=JobState.SUCCEEDED, attempt=3, finished_at=after(T0, 3)),
        twice: _job(twice, state=JobState.SUCCEEDED, attempt=2, finished_at=after(T0, 1)),
    }
    assert figures.committed_twice(jobs, attempts) == [twice]
    dead_then_run = {
        once: [*attempts[once][:2], _attempt(once, 3, "w1", 2, 3, Outcome.FAILED)],
        twice: [
            _attempt(twice, 1, "w1", 0, 1, Outcome.FAILED),
            _attempt(twice, 2, "w1", 1, 2, Outcome.FAILED),
            _attempt(twice, 3, "w1", 2, 3, Outcome.FAILED),
            _attempt(twice, 4, "w2", 3, 4, Outcome.FAILED),
        ],
    }
    jobs = {
        once: attrs.evolve(jobs[once], state=JobState.DEAD),
        twice: attrs.evolve(jobs[twice], state=JobState.DEAD, attempt=4),
    }
    assert figures.committed_twice(jobs, dead_then_run) == [twice]
