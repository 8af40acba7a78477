"""The end-to-end workload: jobs of every kind submitted through the API, and what each
must have come to once the system is quiet.

Kinds:
* `long`:    sleeps `long_s`, to be running when a process is killed; succeeds.
* `quick`:   a short sleep; succeeds.
* `flaky`:   fails attempts 1 and 2 (`fail_times`), then succeeds.
* `doomed`:  always fails; ends dead after `max_attempts`.
* `chain`:   each depends on the one before; all succeed, in order.
* `orphan`:  depends on a doomed job; ends cancelled (`dependency_failed`), never run.
* `delayed`: `delay_seconds` into the future; succeeds, never starting before `run_at`.

Judging reads jobs and attempts back through a store and checks each job against its
kind, then runs the simulator's invariant checker over the same history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain.model import COMMITTED_OUTCOMES, Attempt, Job, JobState, Outcome
from taskyard.domain.ports import JobStore
from taskyard.simulation.checker import History, check
from tests.e2e.harness import Api
from tests.eventually import eventually

QUICK_BACKOFF = {"base_seconds": 0.2, "factor": 1.0, "max_seconds": 0.2, "jitter": "none"}
FAIL_TIMES = 2


@attrs.frozen(kw_only=True)
class Planned:
    kind: str
    body: dict[str, Any]
    after: int | None = None
    """Index (in the plan) of the job this one depends on."""


def plan(
    *, total: int, queue: str, long_count: int, long_s: float, delay_s: float
) -> list[Planned]:
    """`total` jobs: fixed numbers of the special kinds, the rest `quick`. Long jobs come
    first, so they are running by the time the rest is being submitted."""

    def job(kind: str, args: dict[str, Any], **fields: Any) -> Planned:
        after = fields.pop("after", None)
        return Planned(
            kind=kind, body={"task": "sleep", "args": args, "queue": queue, **fields}, after=after
        )

    jobs: list[Planned] = [job("long", {"seconds": long_s}) for _ in range(long_count)]
    doomed_at = len(jobs)
    jobs += [
        job("doomed", {"fail": True}, max_attempts=2, backoff=QUICK_BACKOFF) for _ in range(20)
    ]
    jobs += [job("orphan", {}, after=doomed_at + i % 5) for i in range(5)]
    jobs += [
        job(
            "flaky",
            {"fail_times": FAIL_TIMES, "seconds": 0.01},
            max_attempts=5,
            backoff=QUICK_BACKOFF,
        )
        for _ in range(40)
    ]
    chain_start = len(jobs)
    for i in range(15):
        jobs.append(job("chain", {"seconds": 0.01}, after=chain_start + i - 1 if i else None))
    jobs += [job("delayed", {"seconds": 0.01}, delay_seconds=delay_s) for _ in range(25)]
    assert total >= len(jobs), (total, len(jobs))
    quick = [job("quick", {"seconds": 0.02}) for _ in range(total - len(jobs))]
    # Quick jobs between the others, so every kind is in flight while processes die.
    head, tail = jobs[:long_count], jobs[long_count:]
    mixed: list[Planned] = list(head)
    step = max(1, len(quick) // max(1, len(tail)))
    for index, planned in enumerate(tail):
        mixed.append(planned)
        mixed.extend(quick[index * step : (index + 1) * step])
    mixed.extend(quick[len(tail) * step :])
    # Indexes of dependencies were positions in `jobs`; map them to positions in `mixed`.
    where = {id(p): i for i, p in enumerate(mixed)}
    by_old = {old: where[id(p)] for old, p in enumerate(jobs)}
    return [attrs.evolve(p, after=by_old[p.after]) if p.after is not None else p for p in mixed]


@attrs.define
class Submitted:
    kinds: dict[UUID, str] = attrs.field(factory=dict)
    ids: list[UUID] = attrs.field(factory=list)


def submit(api: Api, planned: Sequence[Planned], into: Submitted) -> None:
    """POST each job (201 each), filling `depends_on` from the ids already given."""
    for item in planned:
        body = dict(item.body)
        if item.after is not None:
            body["depends_on"] = [str(into.ids[item.after])]
        status, doc = api.call("POST", "/v1/jobs", body)
        assert status == 201, (status, doc)
        job_id = UUID(doc["id"])
        into.ids.append(job_id)
        into.kinds[job_id] = item.kind


def wait_all_terminal(store: JobStore, ids: Sequence[UUID], *, timeout_s: float) -> None:
    pending = set(ids)

    def settled() -> bool:
        for job_id in sorted(pending)[:100]:
            if store.get(job_id).state.is_terminal:
                pending.discard(job_id)
        return not pending

    eventually(settled, timeout_s=timeout_s, what=f"{len(pending)} jobs still not terminal")


def _committed(attempts: Sequence[Attempt]) -> list[Outcome]:
    return [a.outcome for a in attempts if a.outcome in COMMITTED_OUTCOMES]


def _judge(kind: str, job: Job, attempts: Sequence[Attempt]) -> str | None:
    """What is wrong with one job, or None."""
    committed = _committed(attempts)
    if kind in ("long", "quick", "chain", "delayed"):
        if job.state is not JobState.SUCCEEDED or committed != [Outcome.SUCCEEDED]:
            return f"{job.state.value} with committed outcomes {committed}"
    elif kind == "flaky":
        expected = [
            Outcome.FAILED if a.attempt <= FAIL_TIMES else Outcome.SUCCEEDED
            for a in attempts
            if a.outcome in COMMITTED_OUTCOMES
        ]
        if (
            job.state is not JobState.SUCCEEDED
            or committed != expected
            or committed[-1:] != [Outcome.SUCCEEDED]
        ):
            return f"{job.state.value} with committed outcomes {committed}"
    elif kind == "doomed":
        if job.state is not JobState.DEAD or set(committed) != {Outcome.FAILED}:
            return f"{job.state.value} with committed outcomes {committed}"
        if len(attempts) != job.max_attempts:
            return f"dead after {len(attempts)} attempts, not {job.max_attempts}"
    elif kind == "orphan":
        if job.state is not JobState.CANCELLED or attempts:
            return f"{job.state.value} after {len(attempts)} attempts"
        if job.last_error is None or job.last_error.type != "dependency_failed":
            return f"cancelled with last_error {job.last_error}"
    else:
        raise AssertionError(kind)
    if kind == "delayed" and attempts and attempts[0].started_at < job.run_at:
        return f"started at {attempts[0].started_at}, before its run_at {job.run_at}"
    return None


@attrs.frozen(kw_only=True)
class Verdict:
    jobs: dict[UUID, Job]
    attempts: dict[UUID, list[Attempt]]

    def outcomes(self) -> Counter[str]:
        return Counter(a.outcome.value for records in self.attempts.values() for a in records)

    def lost_by(self, worker: str) -> list[UUID]:
        """Jobs with an attempt of `worker` that the reaper ended `worker_lost`."""
        return sorted(
            job_id
            for job_id, records in self.attempts.items()
            if any(
                a.worker == worker
                and a.outcome is Outcome.WORKER_LOST
                and a.error is not None
                and a.error.type == "worker_lost"
                for a in records
            )
        )


def judge(store: JobStore, submitted: Submitted) -> Verdict:
    """Every job came to what its kind says, and the checker finds no broken invariant."""
    jobs = {job_id: store.get(job_id) for job_id in submitted.ids}
    attempts = {job_id: store.attempts(job_id) for job_id in submitted.ids}
    problems = []
    for job_id in submitted.ids:
        kind = submitted.kinds[job_id]
        wrong = _judge(kind, jobs[job_id], attempts[job_id])
        if wrong is not None:
            problems.append(f"{kind} {job_id}: {wrong}")
    assert not problems, f"{len(problems)} jobs went wrong:\n" + "\n".join(problems[:20])
    report = check(History(jobs=jobs, attempts=attempts), at_rest=True)
    assert report.ok, "\n".join(
        f"{v.invariant}: {v.message} ({v.job_id})" for v in report.violations
    )
    assert "one_outcome" in report.checked and "one_live_lease" in report.checked
    return Verdict(jobs=jobs, attempts=attempts)
