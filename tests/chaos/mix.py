"""The chaos workload: a seeded mix of jobs, the client that submits it through the API
while the nemesis strikes, and what each job must have come to once all is quiet.

Kinds (every job is the built-in `sleep` task, so any worker runs any of them):

* `quick`:   sleeps 0.02-0.3 s; succeeds.
* `long`:    sleeps 1-4 s, so workers hold jobs when they die; succeeds.
* `flaky`:   fails attempts 1 and 2, then succeeds (backoff a fixed 0.2 s).
* `doomed`:  always fails; ends dead after exactly `max_attempts` attempts.
* `orphan`:  depends on a doomed job; ends cancelled (`dependency_failed`), never run.
* `chain`:   chains of up to 5, each link depending on the one before; all succeed.
* `delayed`: `delay_seconds` 1-8; succeeds, its first attempt not before its `run_at`.
* `cancel_waiting`: an hour's delay; cancelled by the client a moment later, never run.
* `cancel_running`: sleeps 60 s; cancelled by the client 0.5-4 s after submission, while
  queued or running; ends cancelled, and no attempt starts after the cancel took effect.

Jobs that must succeed get `max_attempts` 10, so that a job which happens to be on a
worker that dies several times still ends as its kind says (each death costs an attempt).

Every submission carries its own idempotency key, so a submission answered with a 5xx or
not at all (a PostgreSQL backend terminated under the API) is simply sent again, as the
API's contract says. Some jobs are sent again on purpose later: with the same body (the
answer must be 200 and the same job) or with another body (the answer must be 409).
"""

from __future__ import annotations

import enum
import heapq
import http.client
import itertools
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain.model import COMMITTED_OUTCOMES, Attempt, Job, JobState, Outcome
from taskyard.domain.timefmt import seconds_between
from taskyard.simulation.checker import Replay
from tests.e2e.harness import Api
from tests.e2e.workload import FAIL_TIMES, QUICK_BACKOFF

RETRY_DELAY_S = 0.2
"""Every retry of a flaky or doomed job waits this long (`QUICK_BACKOFF`: fixed, no jitter)."""
assert QUICK_BACKOFF == {
    "base_seconds": RETRY_DELAY_S,
    "factor": 1.0,
    "max_seconds": RETRY_DELAY_S,
    "jitter": "none",
}
RETRY_SLACK_S = 0.001
SUCCEED_ATTEMPTS = 10
DOOMED_ATTEMPTS = 3
CHAIN_LENGTH_MAX = 5
REQUEST_DEADLINE_S = 60.0
"""How long the client keeps sending one request again while it gets 5xx or no answer."""
RESEND_PAUSE_S = 0.05


class Kind(enum.StrEnum):
    QUICK = "quick"
    LONG = "long"
    FLAKY = "flaky"
    DOOMED = "doomed"
    ORPHAN = "orphan"
    CHAIN = "chain"
    DELAYED = "delayed"
    CANCEL_WAITING = "cancel_waiting"
    CANCEL_RUNNING = "cancel_running"


WEIGHTS: Mapping[Kind, float] = {
    Kind.QUICK: 57,
    Kind.LONG: 10,
    Kind.FLAKY: 7,
    Kind.DOOMED: 4,
    Kind.ORPHAN: 2,
    Kind.CHAIN: 8,
    Kind.DELAYED: 5,
    Kind.CANCEL_WAITING: 3,
    Kind.CANCEL_RUNNING: 4,
}
SUCCEEDING = frozenset({Kind.QUICK, Kind.LONG, Kind.CHAIN, Kind.DELAYED, Kind.FLAKY})
SAME_REPLAY_SHARE = 0.02
CONFLICT_REPLAY_SHARE = 0.005


class Resend(enum.StrEnum):
    SAME = "same"
    CONFLICT = "conflict"


@attrs.frozen(kw_only=True)
class Planned:
    index: int
    kind: Kind
    body: dict[str, Any]
    after: int | None = None
    """Index (in the plan) of the job this one depends on; it is submitted earlier."""
    cancel_after_s: float | None = None
    resend: Resend | None = None
    resend_after_s: float = 0.0

    @property
    def key(self) -> str:
        key: str = self.body["idempotency_key"]
        return key


def plan_mix(seed: int, *, total: int, queue: str, tag: str) -> list[Planned]:
    """`total` jobs in submission order, drawn from `seed` (the same seed, the same mix)."""
    rng = random.Random(f"taskyard-chaos:{seed}:mix")
    kinds = sorted(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    plan: list[Planned] = []
    doomed: list[int] = []
    open_chain: tuple[int, int] | None = None
    """(index of the chain's last link, its length so far)."""

    for index in range(total):
        kind = rng.choices(kinds, weights)[0]
        if kind is Kind.ORPHAN and not doomed:
            kind = Kind.DOOMED
        fields: dict[str, Any] = {}
        after: int | None = None
        cancel_after_s: float | None = None
        if kind is Kind.QUICK:
            args: dict[str, Any] = {"seconds": round(rng.uniform(0.02, 0.3), 3)}
            fields["max_attempts"] = SUCCEED_ATTEMPTS
        elif kind is Kind.LONG:
            args = {"seconds": round(rng.uniform(1.0, 4.0), 3)}
            fields["max_attempts"] = SUCCEED_ATTEMPTS
        elif kind is Kind.FLAKY:
            args = {"fail_times": FAIL_TIMES, "seconds": 0.05}
            fields.update(max_attempts=SUCCEED_ATTEMPTS, backoff=QUICK_BACKOFF)
        elif kind is Kind.DOOMED:
            args = {"fail": True, "seconds": 0.02}
            fields.update(max_attempts=DOOMED_ATTEMPTS, backoff=QUICK_BACKOFF)
            doomed.append(index)
        elif kind is Kind.ORPHAN:
            args = {}
            after = rng.choice(doomed[-20:])
        elif kind is Kind.CHAIN:
            args = {"seconds": round(rng.uniform(0.02, 0.2), 3)}
            fields["max_attempts"] = SUCCEED_ATTEMPTS
            if open_chain is not None and open_chain[1] < CHAIN_LENGTH_MAX:
                after = open_chain[0]
                open_chain = (index, open_chain[1] + 1)
            else:
                open_chain = (index, 1)
        elif kind is Kind.DELAYED:
            args = {"seconds": 0.02}
            fields.update(max_attempts=SUCCEED_ATTEMPTS, delay_seconds=round(rng.uniform(1, 8), 3))
        elif kind is Kind.CANCEL_WAITING:
            args = {}
            fields["delay_seconds"] = 3600
            cancel_after_s = round(rng.uniform(0.0, 3.0), 3)
        else:
            assert kind is Kind.CANCEL_RUNNING, kind
            args = {"seconds": 60}
            fields["max_attempts"] = SUCCEED_ATTEMPTS
            cancel_after_s = round(rng.uniform(0.5, 4.0), 3)
        draw = rng.random()
        resend: Resend | None = None
        if draw < CONFLICT_REPLAY_SHARE:
            resend = Resend.CONFLICT
        elif draw < CONFLICT_REPLAY_SHARE + SAME_REPLAY_SHARE:
            resend = Resend.SAME
        resend_after_s = round(rng.uniform(0.0, 5.0), 3)
        body = {
            "task": "sleep",
            "args": args,
            "queue": queue,
            "idempotency_key": f"{tag}-{index}",
            **fields,
        }
        plan.append(
            Planned(
                index=index,
                kind=kind,
                body=body,
                after=after,
                cancel_after_s=cancel_after_s,
                resend=resend if kind is not Kind.ORPHAN else None,
                resend_after_s=resend_after_s,
            )
        )
    return plan


# --- the client -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CancelAnswer:
    status: int
    state: JobState | None
    attempt: int | None
    """The attempt the job was at when the cancel took effect (from the answer)."""


@attrs.define
class Submitted:
    ids: dict[int, UUID] = attrs.field(factory=dict)
    """Plan index to the id of the job the API acknowledged (201, or 200 for a resend)."""
    answers: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    cancels: dict[int, CancelAnswer] = attrs.field(factory=dict)
    replays: list[Replay] = attrs.field(factory=list)
    replay_answers: list[tuple[int, Resend, int]] = attrs.field(factory=list)
    """(plan index, kind of resend, HTTP status)."""
    resent: Counter[str] = attrs.field(factory=Counter)
    """Requests sent again, by why (`503`, `ConnectionResetError`, ...)."""
    statuses: Counter[int] = attrs.field(factory=Counter)

    @property
    def acknowledged(self) -> frozenset[UUID]:
        return frozenset(self.ids.values())


class Client:
    """Submits the plan through the API at `rate_per_s`, cancels and resends on time."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.submitted = Submitted()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send until an answer that is not a 5xx; a 5xx or no answer is sent again."""
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        while True:
            why: str
            try:
                status, doc = self.api.call(method, path, body)
            except (OSError, http.client.HTTPException) as exc:
                self.api.close()
                why = type(exc).__name__
            else:
                self.submitted.statuses[status] += 1
                if status < 500:
                    return status, doc
                why = str(status)
            self.submitted.resent[why] += 1
            assert time.monotonic() < deadline, f"{method} {path}: no answer but {why} for long"
            time.sleep(RESEND_PAUSE_S)

    def run(self, plan: Sequence[Planned], *, rate_per_s: float) -> Submitted:
        """Submit job i at `i / rate_per_s` seconds; cancels and resends when they are due."""
        began = time.monotonic()
        later: list[tuple[float, int, str, int]] = []
        """(due, seq, action, plan index)."""
        seq = 0
        for item in plan:
            due = began + item.index / rate_per_s
            while later and later[0][0] <= due:
                self._pause_until(later[0][0])
                _, _, action, index = heapq.heappop(later)
                self._act(action, plan[index])
            self._pause_until(due)
            self._submit(item)
            now = time.monotonic()
            if item.cancel_after_s is not None:
                seq += 1
                heapq.heappush(later, (now + item.cancel_after_s, seq, "cancel", item.index))
            if item.resend is not None:
                seq += 1
                heapq.heappush(later, (now + item.resend_after_s, seq, "resend", item.index))
        while later:
            self._pause_until(later[0][0])
            _, _, action, index = heapq.heappop(later)
            self._act(action, plan[index])
        return self.submitted

    @staticmethod
    def _pause_until(moment: float) -> None:
        """Pacing: the plan says when each request goes out."""
        delay_s = moment - time.monotonic()
        if delay_s > 0:
            time.sleep(delay_s)

    def _body(self, item: Planned) -> dict[str, Any]:
        body = dict(item.body)
        if item.after is not None:
            body["depends_on"] = [str(self.submitted.ids[item.after])]
        return body

    def _submit(self, item: Planned) -> None:
        status, doc = self.request("POST", "/v1/jobs", self._body(item))
        # 200: an earlier try of this very request was stored before its answer was lost.
        assert status in (200, 201), (item.kind, status, doc)
        self.submitted.ids[item.index] = UUID(doc["id"])
        self.submitted.answers[item.index] = doc

    def _act(self, action: str, item: Planned) -> None:
        job_id = self.submitted.ids[item.index]
        if action == "cancel":
            status, doc = self.request("POST", f"/v1/jobs/{job_id}/cancel")
            ok = status == 200
            self.submitted.cancels[item.index] = CancelAnswer(
                status=status,
                state=JobState(doc["state"]) if ok else None,
                attempt=doc["attempt"] if ok else None,
            )
            return
        assert item.resend is not None
        body = self._body(item)
        same = item.resend is Resend.SAME
        if not same:
            body["args"] = {**body["args"], "seconds": 0.5}
        status, doc = self.request("POST", "/v1/jobs", body)
        self.submitted.replay_answers.append((item.index, item.resend, status))
        self.submitted.replays.append(
            Replay(
                key=item.key,
                first_job_id=job_id,
                replay_job_id=UUID(doc["id"]) if status in (200, 201) else None,
                same_body=same,
            )
        )


# --- what each job must have come to ----------------------------------------------------------


def _committed(attempts: Sequence[Attempt]) -> list[Outcome]:
    return [a.outcome for a in attempts if a.outcome in COMMITTED_OUTCOMES]


def _lost(attempt: Attempt) -> bool:
    """Ended by the system (its worker died, paused or was cut off), not by its handler."""
    return attempt.outcome in (Outcome.WORKER_LOST, Outcome.STALE)


def judge(item: Planned, job: Job, attempts: Sequence[Attempt], submitted: Submitted) -> str | None:
    """What is wrong with one job, or None."""
    kind = item.kind
    committed = _committed(attempts)
    state = job.state.value
    if kind in (Kind.QUICK, Kind.LONG, Kind.CHAIN, Kind.DELAYED):
        if job.state is not JobState.SUCCEEDED or committed != [Outcome.SUCCEEDED]:
            return f"{state} with committed outcomes {committed}"
        if attempts[-1].outcome is not Outcome.SUCCEEDED or not all(map(_lost, attempts[:-1])):
            return f"attempts {[a.outcome.value for a in attempts]}"
    elif kind is Kind.FLAKY:
        if job.state is not JobState.SUCCEEDED or attempts[-1].outcome is not Outcome.SUCCEEDED:
            return f"{state}, attempts {[a.outcome.value for a in attempts]}"
        for a in attempts[:-1]:
            if not (_lost(a) or (a.outcome is Outcome.FAILED and a.attempt <= FAIL_TIMES)):
                return f"attempt {a.attempt} ended {a.outcome.value}"
        if attempts[-1].attempt <= FAIL_TIMES:
            return f"succeeded on attempt {attempts[-1].attempt}, asked to fail it"
    elif kind is Kind.DOOMED:
        if job.state is not JobState.DEAD or len(attempts) != job.max_attempts:
            return f"{state} after {len(attempts)} attempts (max {job.max_attempts})"
        if not all(a.outcome is Outcome.FAILED or _lost(a) for a in attempts):
            return f"attempts {[a.outcome.value for a in attempts]}"
    elif kind in (Kind.ORPHAN, Kind.CANCEL_WAITING):
        if job.state is not JobState.CANCELLED or attempts:
            return f"{state} after {len(attempts)} attempts"
        if kind is Kind.ORPHAN and (
            job.last_error is None or job.last_error.type != "dependency_failed"
        ):
            return f"cancelled with last_error {job.last_error}"
        if kind is Kind.CANCEL_WAITING:
            answer = submitted.cancels.get(item.index)
            if answer is None or answer.state is not JobState.CANCELLED:
                return f"the cancel was answered {answer}"
    else:
        assert kind is Kind.CANCEL_RUNNING, kind
        answer = submitted.cancels.get(item.index)
        if answer is None or answer.status != 200 or answer.attempt is None:
            return f"the cancel was answered {answer}"
        if job.state is not JobState.CANCELLED:
            return f"{state} though cancelled at attempt {answer.attempt}"
        ran_after = [a.attempt for a in attempts if a.attempt > answer.attempt]
        if ran_after:
            return f"attempts {ran_after} started after the cancel took effect at {answer.attempt}"
        if any(o is not Outcome.CANCELLED for o in committed):
            return f"committed outcomes {committed}"
    if kind is Kind.DELAYED and attempts and attempts[0].started_at < job.run_at:
        # Nothing moves a delayed job's run_at here (it never fails; a lost attempt is
        # queued again without backoff): the first attempt is judged by it too.
        return f"first attempt at {attempts[0].started_at}, before its run_at {job.run_at}"
    if kind in (Kind.FLAKY, Kind.DOOMED):
        for a, b in itertools.pairwise(attempts):
            if a.outcome is Outcome.FAILED and a.finished_at is not None:
                waited_s = seconds_between(a.finished_at, b.started_at)
                if waited_s < RETRY_DELAY_S - RETRY_SLACK_S:
                    return f"attempt {b.attempt} began {waited_s:.3f} s after a failure"
    return None
