"""Schedules: a task fired at the times of a cron spec or every N seconds, and the pure
rules that decide each fire.

A schedule's fire times are a pure function of its timing:

* `Cron`: a five-field cron expression read by `cronsim` in an IANA time zone (`zoneinfo`).
  Across DST a wall-clock time that does not exist fires once, at the first instant after
  the gap (a daily 02:30 in New York fires at 03:00 EDT on the spring-forward day), and a
  wall-clock time that happens twice fires once, at its first occurrence (a daily 01:30
  fires at 01:30 EDT on the fall-back day, not again at 01:30 EST).
* `Every`: whole multiples of the period since the Unix epoch (UTC), so every process
  that declares the same schedule agrees on its fire times without talking to another.

Each fire is decided once, by `plan_fires`, in the store transaction that also enqueues its
job (`store.plans.fire_schedules`): the fire is `enqueued`, `missed` (its catch-up policy
dropped it) or `overlap_skipped` (its overlap policy dropped it). The fired job's
idempotency key is `fire_key(name, fire_at)`, so no fire is ever enqueued twice.

Catch-up (`CatchUp`), when the scheduler got to a schedule after more than one of its fires
came due (no scheduler ran, or none reached the store):

* fires older than `catch_up_window_s` are missed whatever the policy;
* `all` enqueues every fire within the window, oldest first;
* `latest` (the default) enqueues only the newest due fire: after an outage the work runs
  once, without a burst of stale runs, and is not silently lost;
* `skip` enqueues nothing of a backlog: when more than one fire is due, all are missed and
  the schedule goes on from its next fire.

Overlap (`Overlap`), when the job of the schedule's previous fire has not finished:

* `skip` (the default, as Temporal's): the new fire is dropped, so a job slower than its
  period never piles up runs;
* `allow`: the new fire is enqueued anyway;
* `cancel_previous`: the new fire is enqueued and a cancel is requested for the previous job.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from cronsim import CronSim, CronSimError

from taskyard.domain import contract
from taskyard.domain.contract import (
    CATCH_UP_WINDOW_S_DEFAULT,
    CATCH_UP_WINDOW_S_MAX,
    EVERY_S_MAX,
    EVERY_S_MIN,
)
from taskyard.domain.errors import FieldError, ValidationError
from taskyard.domain.ids import uuid7
from taskyard.domain.model import CatchUp, FireId, NewJob, Overlap
from taskyard.domain.schema import INVALID
from taskyard.domain.submission import Submission, read_backoff
from taskyard.domain.timefmt import EPOCH, format_time

RECENT_FIRES_MAX = 10
"""How many decided fires a schedule keeps (`GET /v1/schedules/{name}` shows them)."""
FIRES_PER_PASS_MAX = 1000
"""The most fires one schedule has decided in one pass; the rest wait for the next."""
_SCAN_MAX = 20_000
"""The most cron fire times one pass walks (a minutely cron's week is 10,080)."""
FIRE_KEY_PREFIX = "schedule:"
_US = timedelta(microseconds=1)


class FireOutcome(enum.StrEnum):
    ENQUEUED = "enqueued"
    MISSED = "missed"
    OVERLAP_SKIPPED = "overlap_skipped"


CATCH_UP_DEFAULT = CatchUp(contract.CATCH_UP_DEFAULT)
OVERLAP_DEFAULT = Overlap(contract.OVERLAP_DEFAULT)


class TimingError(ValueError):
    """A cron expression, time zone or period that cannot be a schedule's timing; `field`
    names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (read once from the system's tz database, then cached)."""
    if not name or "\x00" in name or name.startswith(("/", ".")) or ".." in name:
        raise TimingError("timezone", "not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise TimingError("timezone", f"unknown time zone {name!r}") from None


@attrs.frozen(kw_only=True)
class Cron:
    """A five-field cron expression (minute hour day-of-month month day-of-week) in a zone."""

    expression: str
    timezone: str = "UTC"

    def check(self) -> None:
        """Raise `TimingError` unless the expression and zone are usable."""
        tz = zone(self.timezone)
        if len(self.expression) > 200 or len(self.expression.split()) != 5:
            raise TimingError("cron", "a cron expression has five fields")
        try:
            CronSim(self.expression, datetime(2000, 1, 1, tzinfo=tz))
        except (CronSimError, ValueError) as exc:
            raise TimingError("cron", f"not a cron expression: {exc}") from None

    def after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (UTC).

        cronsim reads an instant as its wall-clock time and loses which of a repeated
        hour's two passes it was in, so a fire time that is not after `moment` is passed
        over."""
        it = CronSim(self.expression, moment.astimezone(zone(self.timezone)))
        for _ in range(_SCAN_MAX):
            fire = next(it).astimezone(UTC)
            if fire > moment:
                return fire
        raise AssertionError(f"no fire after {moment} for {self.expression!r}")  # pragma: no cover


@attrs.frozen(kw_only=True)
class Every:
    """Every `seconds`, at whole multiples of it since the Unix epoch."""

    seconds: float

    @property
    def period_us(self) -> int:
        """The period in whole milliseconds (a fire time is one on the wire)."""
        return round(self.seconds * 1000) * 1000

    def check(self) -> None:
        """Its bounds are the contract's (`every_seconds`), checked before it is made."""
        assert EVERY_S_MIN <= self.seconds <= EVERY_S_MAX, self.seconds

    def after(self, moment: datetime) -> datetime:
        """
        >>> Every(seconds=5).after(datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)).second
        10
        >>> Every(seconds=5).after(datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)).second
        15
        """
        elapsed_us = (moment - EPOCH) // _US
        return EPOCH + (elapsed_us // self.period_us + 1) * self.period_us * _US

    def count(self, start: datetime, end: datetime) -> int:
        """Fire times in [start, end)."""
        if end <= start:
            return 0
        return self._index_before(end) - self._index_before(start)

    def latest(self, start: datetime, end: datetime) -> datetime | None:
        """The newest fire time in [start, end], or None."""
        k = ((end - EPOCH) // _US) // self.period_us
        fire = EPOCH + k * self.period_us * _US
        return fire if fire >= start else None

    def _index_before(self, moment: datetime) -> int:
        """How many fire times since the epoch are before `moment` (an offset count)."""
        return -((-((moment - EPOCH) // _US)) // self.period_us)


Timing = Cron | Every


def at_or_after(timing: Timing, moment: datetime) -> datetime:
    return timing.after(moment - _US)


def fires_between(timing: Timing, start: datetime, end: datetime, *, limit: int) -> list[datetime]:
    """Fire times in [start, end], oldest first, at most `limit` of them."""
    out: list[datetime] = []
    fire = at_or_after(timing, start)
    while fire <= end and len(out) < limit:
        out.append(fire)
        fire = timing.after(fire)
    return out


def count_between(timing: Timing, start: datetime, end: datetime) -> int:
    """Fire times in [start, end) (a cron walk stops counting at `_SCAN_MAX`)."""
    if isinstance(timing, Every):
        return timing.count(start, end)
    return len(fires_between(timing, start, end - _US, limit=_SCAN_MAX))


def latest_between(timing: Timing, start: datetime, end: datetime) -> datetime | None:
    if isinstance(timing, Every):
        return timing.latest(start, end)
    fires = fires_between(timing, start, end, limit=_SCAN_MAX)
    return fires[-1] if fires else None


@attrs.frozen(kw_only=True)
class ScheduleSpec:
    """What a schedule is declared as: a name, a timing, its policies and the job it fires
    (a submission without an idempotency key, run time or dependencies)."""

    name: str
    timing: Timing
    job: Submission
    catch_up: CatchUp = CATCH_UP_DEFAULT
    catch_up_window_s: float = CATCH_UP_WINDOW_S_DEFAULT
    overlap: Overlap = OVERLAP_DEFAULT

    def __attrs_post_init__(self) -> None:
        assert 0 < self.catch_up_window_s <= CATCH_UP_WINDOW_S_MAX, self.catch_up_window_s
        assert self.job.idempotency_key is None and not self.job.depends_on, self.job
        assert self.job.run_at is None and self.job.delay_s is None, self.job

    def to_json(self) -> dict[str, Any]:
        """The declared fields as the API shows them (`api.md`)."""
        job = self.job
        return {
            "name": self.name,
            "task": job.task,
            "args": dict(job.args),
            "cron": self.timing.expression if isinstance(self.timing, Cron) else None,
            "every_seconds": self.timing.seconds if isinstance(self.timing, Every) else None,
            "timezone": self.timing.timezone if isinstance(self.timing, Cron) else "UTC",
            "catch_up": self.catch_up.value,
            "catch_up_window_seconds": self.catch_up_window_s,
            "overlap": self.overlap.value,
            "queue": job.queue,
            "priority": job.priority,
            "max_attempts": job.max_attempts,
            "backoff": job.backoff.to_json(),
            "timeout_seconds": job.timeout_s,
        }


@attrs.frozen(kw_only=True)
class Fire:
    """One decided fire: its time, what was decided, and its job when one was enqueued."""

    fire_at: datetime
    outcome: FireOutcome
    job_id: UUID | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fire_at": format_time(self.fire_at),
            "outcome": self.outcome.value,
            "job_id": None if self.job_id is None else str(self.job_id),
        }


@attrs.frozen(kw_only=True)
class FireCounts:
    """What a schedule has done since it was created (the metrics read these)."""

    enqueued: int = 0
    missed: int = 0
    overlap_skipped: int = 0
    lag_s_sum: float = 0.0
    """Seconds from each enqueued fire's time to its enqueue, added up."""

    def plus(self, other: FireCounts) -> FireCounts:
        return FireCounts(
            enqueued=self.enqueued + other.enqueued,
            missed=self.missed + other.missed,
            overlap_skipped=self.overlap_skipped + other.overlap_skipped,
            lag_s_sum=self.lag_s_sum + other.lag_s_sum,
        )


@attrs.frozen(kw_only=True)
class Schedule:
    """A schedule as the store keeps it: its spec and its state."""

    spec: ScheduleSpec
    paused: bool = False
    next_fire_at: datetime
    last_fire_at: datetime | None = None
    """The newest fire decided (whatever was decided)."""
    last_job_id: UUID | None = None
    """The job of the newest enqueued fire (what the overlap policy looks at)."""
    recent: tuple[Fire, ...] = ()
    counts: FireCounts = FireCounts()
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name

    def to_json(self) -> dict[str, Any]:
        return {
            **self.spec.to_json(),
            "paused": self.paused,
            "next_fire_at": format_time(self.next_fire_at),
            "last_fire_at": format_time(self.last_fire_at) if self.last_fire_at else None,
            "recent_fires": [fire.to_json() for fire in reversed(self.recent)],
            "fires": {
                "enqueued": self.counts.enqueued,
                "missed": self.counts.missed,
                "overlap_skipped": self.counts.overlap_skipped,
            },
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
        }


def new_schedule(spec: ScheduleSpec, *, now: datetime, paused: bool = False) -> Schedule:
    """A schedule created at `now`: its first fire is the first fire time after `now`."""
    return Schedule(
        spec=spec,
        paused=paused,
        next_fire_at=spec.timing.after(now),
        created_at=now,
        updated_at=now,
    )


def respecified(schedule: Schedule, spec: ScheduleSpec, *, now: datetime) -> Schedule:
    """`schedule` with a new spec; a new timing starts from the first fire after `now`."""
    if spec == schedule.spec:
        return schedule
    next_fire_at = schedule.next_fire_at
    if spec.timing != schedule.spec.timing:
        next_fire_at = spec.timing.after(now)
    return attrs.evolve(schedule, spec=spec, next_fire_at=next_fire_at, updated_at=now)


def paused_as(schedule: Schedule, *, paused: bool, now: datetime) -> Schedule:
    """Pause or resume. A resumed schedule goes on from its first fire after `now`: the
    fires of a pause are not caught up (a pause is an operator's choice, not an outage)."""
    if paused == schedule.paused:
        return schedule
    next_fire_at = schedule.next_fire_at
    if not paused:
        next_fire_at = schedule.spec.timing.after(now)
    return attrs.evolve(schedule, paused=paused, next_fire_at=next_fire_at, updated_at=now)


# --- firing ---------------------------------------------------------------------------------


def fire_key(name: str, fire_at: datetime) -> str:
    """The idempotency key of a fire's job: one job per (schedule, fire time).

    >>> fire_key("nightly", datetime(2026, 3, 8, 7, tzinfo=UTC))
    'schedule:nightly@2026-03-08T07:00:00.000000Z'
    """
    return f"{FIRE_KEY_PREFIX}{name}@{fire_at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


class _Digest:
    """Bits drawn from a digest: the same fire always gets the same job id."""

    def __init__(self, text: str) -> None:
        self._value = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")

    def getrandbits(self, k: int, /) -> int:
        bits, self._value = self._value & ((1 << k) - 1), self._value >> k
        return bits


def fire_job(
    spec: ScheduleSpec, fire_at: datetime, *, keyed: bool = True, salt: str = ""
) -> NewJob:
    """The job a fire enqueues: the spec's submission, due at once, keyed by the fire (its
    id is drawn from the key, so a retry of the same fire makes the same job). `keyed`
    False is the simulator's broken variant, which forgets the key (and salts the id)."""
    key = fire_key(spec.name, fire_at)
    job = attrs.evolve(spec.job, idempotency_key=key if keyed else None)
    job_id = uuid7(fire_at, _Digest(key + salt))
    return attrs.evolve(
        job.to_new_job(job_id=job_id), schedule=FireId(name=spec.name, fire_at=fire_at)
    )


@attrs.frozen(kw_only=True)
class FirePlan:
    """What one pass decided for one schedule."""

    fires: tuple[Fire, ...]
    """Each fire decided now, oldest first; an `enqueued` one names the job to create."""
    missed_unlisted: int
    """Missed fires counted but not listed one by one (those older than the catch-up
    window, and a long backlog's beyond the first few)."""
    next_fire_at: datetime
    cancel: tuple[UUID, ...] = ()
    """Jobs to cancel (`cancel_previous`), in order."""

    @property
    def enqueued(self) -> list[Fire]:
        return [f for f in self.fires if f.outcome is FireOutcome.ENQUEUED]

    def counts(self, now: datetime) -> FireCounts:
        enqueued = self.enqueued
        return FireCounts(
            enqueued=len(enqueued),
            missed=self.missed_unlisted
            + sum(1 for f in self.fires if f.outcome is FireOutcome.MISSED),
            overlap_skipped=sum(1 for f in self.fires if f.outcome is FireOutcome.OVERLAP_SKIPPED),
            lag_s_sum=sum((now - f.fire_at).total_seconds() for f in enqueued),
        )


def plan_fires(
    schedule: Schedule,
    *,
    now: datetime,
    previous_open: bool,
    limit: int = FIRES_PER_PASS_MAX,
    salt: str = "",
) -> FirePlan:
    """Decide the fires of `schedule` that are due at `now` (store time).

    `previous_open`: the job of the schedule's last enqueued fire exists and has not
    finished. Within one pass, a fire's job counts as open for the next fire.
    """
    assert limit >= 1, limit
    spec, timing = schedule.spec, schedule.spec.timing
    start = at_or_after(timing, schedule.next_fire_at)
    horizon = now - timedelta(seconds=spec.catch_up_window_s)
    unlisted = 0
    if start < horizon:
        unlisted = count_between(timing, start, horizon)
        start = at_or_after(timing, horizon)
    candidates: list[datetime] = []
    missed: list[datetime] = []
    resume = start
    if spec.catch_up is CatchUp.ALL:
        candidates = fires_between(timing, start, now, limit=limit)
        if candidates:
            resume = timing.after(candidates[-1])
    else:
        newest = latest_between(timing, start, now)
        if newest is not None:
            older = count_between(timing, start, newest)
            missed = fires_between(timing, start, newest - _US, limit=RECENT_FIRES_MAX)
            unlisted += older - len(missed)
            if spec.catch_up is CatchUp.SKIP and older > 0:
                missed.append(newest)
            else:
                candidates = [newest]
            resume = timing.after(newest)
    decided: list[Fire] = [Fire(fire_at=f, outcome=FireOutcome.MISSED) for f in missed]
    cancel: list[UUID] = []
    open_job = schedule.last_job_id if previous_open else None
    for fire_at in candidates:
        if open_job is not None and spec.overlap is Overlap.SKIP:
            decided.append(Fire(fire_at=fire_at, outcome=FireOutcome.OVERLAP_SKIPPED))
            continue
        if open_job is not None and spec.overlap is Overlap.CANCEL_PREVIOUS:
            cancel.append(open_job)
        job_id = fire_job(spec, fire_at, salt=salt).id
        decided.append(Fire(fire_at=fire_at, outcome=FireOutcome.ENQUEUED, job_id=job_id))
        open_job = job_id
    decided.sort(key=lambda f: f.fire_at)
    return FirePlan(
        fires=tuple(decided),
        missed_unlisted=unlisted,
        next_fire_at=resume,
        cancel=tuple(cancel),
    )


def fired(schedule: Schedule, plan: FirePlan, *, now: datetime) -> Schedule:
    """`schedule` after `plan`: its next fire, its newest fires, its counts."""
    enqueued = plan.enqueued
    return attrs.evolve(
        schedule,
        next_fire_at=plan.next_fire_at,
        last_fire_at=plan.fires[-1].fire_at if plan.fires else schedule.last_fire_at,
        last_job_id=enqueued[-1].job_id if enqueued else schedule.last_job_id,
        recent=(*schedule.recent, *plan.fires)[-RECENT_FIRES_MAX:],
        counts=schedule.counts.plus(plan.counts(now)),
        updated_at=now,
    )


@attrs.frozen(kw_only=True)
class Fired:
    """What one firing pass did, over every due schedule (the scheduler's metrics)."""

    fires: tuple[tuple[str, Fire], ...] = ()
    counts: FireCounts = FireCounts()
    lags_s: tuple[float, ...] = ()
    queues: tuple[str, ...] = ()
    """The queues the new jobs went to (their workers are woken)."""
    more: bool = False
    """A schedule had more due fires than one pass decides, or more schedules were due."""


def sync_plan(
    stored: Sequence[Schedule], declared: Sequence[ScheduleSpec], *, now: datetime
) -> list[Schedule]:
    """The rows to write when code declares `declared`: a new name is created; a changed
    spec replaces the stored spec (the code wins, and a new timing starts afresh); a
    stored schedule's state (pause, next fire, history) is kept. A stored schedule that
    the code does not declare is left alone: it may come from the API or from another
    version of the code still running during a deploy."""
    by_name = {s.name: s for s in stored}
    out: list[Schedule] = []
    for spec in declared:
        existing = by_name.get(spec.name)
        if existing is None:
            out.append(new_schedule(spec, now=now))
        elif existing.spec != spec:
            out.append(respecified(existing, spec, now=now))
    return out


# --- what a client sends ------------------------------------------------------------------

_INPUT = contract.SCHEDULE_INPUT.validator()
_CHANGE = contract.SCHEDULE_CHANGE.validator()


def parse_schedule(data: object) -> tuple[ScheduleSpec, bool]:
    """A schedule as sent (`contract.SCHEDULE_INPUT`, a parsed JSON object or the same
    built in Python) and whether it starts paused; `ValidationError` names every bad
    field: exactly one of cron and every_seconds, a cron expression cronsim reads, a time
    zone zoneinfo knows (a zone applies to a cron only)."""
    values, errors = _INPUT(data)
    if values is None:
        raise ValidationError(errors)
    backoff = read_backoff(values["backoff"], errors)
    cron, every, tz = values["cron"], values["every_seconds"], values["timezone"]
    timing: Timing | None = None
    if (cron is None) == (every is None):
        errors.append(FieldError("cron", "give cron or every_seconds (one of them)"))
    elif cron is not None and cron is not INVALID and tz is not INVALID:
        timing = Cron(expression=cron, timezone=tz)
    elif every is not None and every is not INVALID:
        timing = Every(seconds=every)
        if tz != "UTC":
            errors.append(FieldError("timezone", "applies to a cron only (every_seconds is UTC)"))
    if timing is not None:
        try:
            timing.check()
        except TimingError as exc:
            errors.append(FieldError(exc.field, exc.message))
    if errors or timing is None:
        raise ValidationError(errors)
    job = Submission(
        task=values["task"],
        args=values["args"],
        queue=values["queue"],
        priority=values["priority"],
        max_attempts=values["max_attempts"],
        backoff=backoff,
        timeout_s=values["timeout_seconds"],
    )
    spec = ScheduleSpec(
        name=values["name"],
        timing=timing,
        job=job,
        catch_up=CatchUp(values["catch_up"]),
        catch_up_window_s=float(values["catch_up_window_seconds"]),
        overlap=Overlap(values["overlap"]),
    )
    return spec, bool(values["paused"])


def parse_change(spec: ScheduleSpec, data: object) -> tuple[ScheduleSpec, bool | None]:
    """A change of `spec` (`contract.SCHEDULE_CHANGE`): the fields sent over the stored
    ones (cron and every_seconds replace each other), checked as a whole schedule; and the
    pause it asks for, if any."""
    values, errors = _CHANGE(data)
    if values is None or errors:
        raise ValidationError(errors)
    assert isinstance(data, Mapping)
    merged = {k: v for k, v in spec.to_json().items() if v is not None}
    sent = {k: v for k, v in data.items() if v is not None}
    if "cron" in sent:
        merged.pop("every_seconds", None)
    if "every_seconds" in sent:
        merged.pop("cron", None)
        merged.pop("timezone", None)
    merged.update(sent)
    paused = merged.pop("paused", None)
    new, _ = parse_schedule(merged)
    return new, None if paused is None else bool(paused)
