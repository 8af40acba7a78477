"""Each SQL store against the in-memory reference, in lockstep, over seeded random operations.

The same operations (same job ids, same reports, same filters) go to the in-memory store
and to the store under test; after every operation their answers and their entire
contents (every job, every attempt record) must agree. The SQLite store runs on a manual
clock moved in step with the reference's, so whole values must be equal, times included;
PostgreSQL keeps its own clock, so times are compared by presence only (leases never
expire here and every delay is either zero or an hour, so no decision depends on them).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.errors import TaskyardError
from taskyard.domain.ids import uuid7
from taskyard.domain.model import Attempt, ErrorInfo, Job, JobState, LeaseRef, NewJob
from taskyard.domain.ports import ClaimRequest, JobFilter, JobQuery, JobStore
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.submission import Submission
from taskyard.domain.transitions import Report, ReportKind
from tests.contract.conftest import STORE_FACTORIES, Harness

STEP_S = 0.001
START = datetime(2026, 3, 1, tzinfo=UTC)


def _job_view(job: Job, *, exact: bool) -> Job:
    if exact:
        return job
    return attrs.evolve(
        job,
        run_at=START,
        created_at=START,
        updated_at=START,
        finished_at=START if job.finished_at else None,
        lease=attrs.evolve(job.lease, expires_at=START) if job.lease else None,
    )


def _attempt_view(record: Attempt, *, exact: bool) -> Any:
    if exact:
        return record
    return attrs.evolve(
        record,
        started_at=START,
        lease_expires_at=START,
        finished_at=START if record.finished_at else None,
    )


def _answer_view(value: Any, *, exact: bool) -> Any:
    if isinstance(value, Job):
        return _job_view(value, exact=exact)
    if isinstance(value, list):
        return [_answer_view(v, exact=exact) for v in value]
    if attrs.has(type(value)):
        fields = attrs.asdict(value, recurse=False)
        for name in ("expires_at",):
            if name in fields and fields[name] is not None and not exact:
                fields[name] = START
        if "job" in fields:
            fields["job"] = _job_view(fields["job"], exact=exact)
        if "jobs" in fields:
            fields["jobs"] = [_job_view(j, exact=exact) for j in fields["jobs"]]
            fields["next_cursor"] = None if exact is False else fields["next_cursor"]
        return (type(value).__name__, fields)
    return value


def _brief(result: tuple[Any, ...]) -> str:
    """Jobs as (id tail, state, error message): enough to see where two answers part."""
    if result[0] != "ok":
        return repr(result)
    value = result[1]
    items = value if isinstance(value, list) else [value]
    return repr(
        [
            (str(v.id)[-6:], v.state.value, v.last_error.message if v.last_error else None)
            if isinstance(v, Job)
            else v
            for v in items
        ]
    )


@attrs.define
class Lockstep:
    reference: InMemoryJobStore
    reference_clock: ManualClock
    other: JobStore
    other_clock: ManualClock | None
    exact: bool
    rng: random.Random
    ids_clock: datetime = START
    ids_made: list[Any] = attrs.field(factory=list)
    trace: list[str] = attrs.field(factory=list)
    seen: set[str] = attrs.field(factory=set)
    """Every job state and attempt outcome the run went through: its coverage."""

    def tick(self) -> None:
        self.reference_clock.advance(STEP_S)
        if self.other_clock is not None:
            self.other_clock.advance(STEP_S)

    def both(self, name: str, call: Callable[[JobStore], Any]) -> Any:
        self.trace.append(name)
        results = []
        for store in (self.reference, self.other):
            try:
                results.append(("ok", call(store)))
            except TaskyardError as exc:
                results.append(("refused", type(exc).__name__, str(exc)))
        ref_view = self._view(results[0])
        other_view = self._view(results[1])
        assert ref_view == other_view, (
            f"step {len(self.trace)} {name}: answers differ:\n"
            f"  memory: {_brief(results[0])}\n  other:  {_brief(results[1])}"
        )
        self.compare_contents(name)
        return results[0][1] if results[0][0] == "ok" else None

    def _view(self, result: tuple[Any, ...]) -> Any:
        if result[0] == "ok":
            return ("ok", _answer_view(result[1], exact=self.exact))
        return result

    def compare_contents(self, name: str, *, attempts: bool | None = None) -> None:
        """Every job, and (every tenth step, and at the end) every attempt record."""
        if attempts is None:
            attempts = len(self.trace) % 10 == 0
        ref_jobs = self._all(self.reference)
        other_jobs = self._all(self.other)
        assert [j.id for j in ref_jobs] == [j.id for j in other_jobs], name
        for mine, theirs in zip(ref_jobs, other_jobs, strict=True):
            self.seen.add(mine.state.value)
            assert _job_view(mine, exact=self.exact) == _job_view(theirs, exact=self.exact), (
                f"step {len(self.trace)} {name}: job {mine.id} differs"
            )
            if not attempts:
                continue
            records = self.reference.attempts(mine.id)
            self.seen.update(f"attempt:{a.outcome.value}" for a in records)
            assert [_attempt_view(a, exact=self.exact) for a in records] == [
                _attempt_view(a, exact=self.exact) for a in self.other.attempts(mine.id)
            ], f"step {len(self.trace)} {name}: attempts of {mine.id} differ"

    @staticmethod
    def _all(store: JobStore) -> list[Job]:
        jobs = list(store.list_jobs(JobQuery(limit=1000)).jobs)
        return sorted(jobs, key=lambda j: j.id)

    # --- operations -------------------------------------------------------------------

    def new_job(self) -> NewJob:
        rng = self.rng
        key = f"key-{rng.randrange(6)}" if rng.random() < 0.3 else None
        existing = [j.id for j in self._all(self.reference)]
        depends_on = tuple(rng.sample(existing, k=min(len(existing), rng.choice([0, 0, 1, 2]))))
        submission = Submission(
            task=rng.choice(["t1", "t2"]),
            args={"n": rng.randrange(3)} if key else {"n": rng.randrange(10**6)},
            queue=rng.choice(["a", "b"]),
            priority=rng.choice([-1, 0, 0, 1]),
            delay_s=rng.choice([None, None, None, 3600.0]),
            max_attempts=rng.choice([1, 2, 3]),
            backoff=RetryPolicy(jitter=Jitter.NONE),
            idempotency_key=key,
            depends_on=depends_on,
        )
        # Ids in creation order, as the system's uuid7 makes them.
        self.ids_clock += timedelta(milliseconds=1)
        return submission.to_new_job(job_id=uuid7(self.ids_clock, rng))

    def running_refs(self) -> list[LeaseRef]:
        return [
            j.ref()
            for j in self._all(self.reference)
            if j.state is JobState.RUNNING and j.lease is not None
        ]

    def any_ids(self) -> list[Any]:
        return [j.id for j in self._all(self.reference)]

    def step(self) -> None:
        rng = self.rng
        self.tick()
        op = rng.choice(
            ["enqueue"] * 2
            + ["claim"] * 3
            + ["report"] * 3
            + ["scheduler"] * 2
            + ["release", "heartbeat", "checkpoint", "cancel", "retry", "reschedule", "bulk"]
            + ["pause"]
        )
        if op == "enqueue":
            batch = [self.new_job() for _ in range(rng.randrange(1, 4))]
            self.both("enqueue", lambda s: s.enqueue(batch))
        elif op == "claim":
            request = ClaimRequest(
                worker=rng.choice(["w1", "w2"]),
                limit=rng.randrange(1, 5),
                lease_ttl_s=3600,
                queues=rng.choice([None, frozenset({"a"}), frozenset({"a", "b"})]),
                tasks=rng.choice([None, None, frozenset({"t1"})]),
            )
            self.both("claim", lambda s: s.claim(request))
        elif op == "report":
            reports = [self._report(ref) for ref in self._some_refs()]
            self.both("report", lambda s: s.report(reports))
        elif op == "release":
            refs = self._some_refs()
            self.both("release", lambda s: s.release(refs))
        elif op == "heartbeat":
            refs = self._some_refs()
            self.both("heartbeat", lambda s: s.heartbeat(refs, lease_ttl_s=3600))
        elif op == "checkpoint":
            refs = self._some_refs() or [LeaseRef(job_id=uuid7(START, rng), attempt=1, worker="w")]
            state = {"at": rng.randrange(100)}
            self.both("checkpoint", lambda s: s.checkpoint(refs[0], state))
        elif op in ("cancel", "retry", "reschedule"):
            ids = self.any_ids()
            if not ids:
                return
            job_id = rng.choice(ids)
            if op == "cancel":
                self.both("cancel", lambda s: s.cancel(job_id))
            elif op == "retry":
                self.both("retry", lambda s: s.retry(job_id))
            else:
                priority = rng.choice([-2, 5])
                self.both("reschedule", lambda s: s.reschedule(job_id, priority=priority))
        elif op == "bulk":
            job_filter = JobFilter(
                queues=rng.choice([frozenset(), frozenset({"b"})]),
                tasks=rng.choice([frozenset(), frozenset({"t2"})]),
            )
            if rng.random() < 0.5:
                self.both("cancel_many", lambda s: s.cancel_many(job_filter))
            else:
                self.both("retry_many", lambda s: s.retry_many(job_filter))
        elif op == "scheduler":
            limit = rng.randrange(1, 4)
            self.both("resolve", lambda s: s.resolve_dependencies(limit=limit))
            self.both("promote", lambda s: s.promote_due(limit=limit))
            self.both("reap", lambda s: s.reap_expired(limit=limit))
        else:
            queue = rng.choice(["a", "b"])
            paused = rng.random() < 0.3
            self.both("pause", lambda s: s.set_paused(queue, paused=paused))

    def _some_refs(self) -> list[LeaseRef]:
        refs = self.running_refs()
        picked = self.rng.sample(refs, k=min(len(refs), self.rng.randrange(0, 3)))
        if picked and self.rng.random() < 0.2:
            picked.append(picked[0])
        if picked and self.rng.random() < 0.2:
            stale = picked[0]
            picked.append(attrs.evolve(stale, attempt=stale.attempt - 1))
        return picked

    def _report(self, ref: LeaseRef) -> Report:
        kind = self.rng.choice(list(ReportKind))
        if kind is ReportKind.SUCCEEDED:
            return Report(ref=ref, kind=kind, result={"ok": self.rng.randrange(5)})
        return Report(
            ref=ref,
            kind=kind,
            error=ErrorInfo(type="E", message=f"m{self.rng.randrange(5)}", traceback="tb"),
            retryable=self.rng.random() < 0.7,
            retry_delay_s=self.rng.choice([0.0, 3600.0]),
        )


@pytest.mark.parametrize(
    ("name", "seed", "steps"),
    [("sqlite", 1, 300), ("sqlite", 2, 300), ("postgres", 3, 200), ("postgres", 5, 200)],
)
def test_a_sql_store_answers_and_holds_what_the_memory_store_does(
    request: pytest.FixtureRequest, name: str, seed: int, steps: int
) -> None:
    reference_clock = ManualClock(START)
    other_clock: ManualClock | None = None
    if name == "sqlite":
        from taskyard.adapters.sqlite import SqliteJobStore

        other_clock = ManualClock(START)
        tmp_path: Path = request.getfixturevalue("tmp_path")
        store: JobStore = SqliteJobStore(tmp_path / "lockstep.db", clock=other_clock)
        factory: Iterator[Harness[JobStore]] | None = None
    else:
        factory = STORE_FACTORIES[name](request)
        store = next(factory).adapter
    lockstep = Lockstep(
        reference=InMemoryJobStore(reference_clock),
        reference_clock=reference_clock,
        other=store,
        other_clock=other_clock,
        exact=other_clock is not None,
        rng=random.Random(seed),
    )
    try:
        for _ in range(steps):
            lockstep.step()
        lockstep.compare_contents("end", attempts=True)
        assert len(lockstep.any_ids()) > 20, "the scenario made enough jobs to mean something"
        wanted = {state.value for state in JobState} | {
            "attempt:succeeded",
            "attempt:failed",
            "attempt:timeout",
            "attempt:cancelled",
            "attempt:worker_lost",
        }
        assert wanted <= lockstep.seen, sorted(wanted - lockstep.seen)
    finally:
        if factory is not None:
            for _ in factory:
                pass
        else:
            close = getattr(store, "close", None)
            if close is not None:
                close()
