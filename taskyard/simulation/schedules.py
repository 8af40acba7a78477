"""Schedules in the simulated world: a few drawn from the seed, declared at the start,
fired by the production scheduler under every fault, changed by an operator now and then,
paused once the liveness phase has had its look; and the invariants their fires keep.

* `schedule_fire_once` (safety, any fault): no (schedule, fire time) has two jobs, and
  each fired job carries its fire's idempotency key.
* `schedule_fires_in_time` (liveness): every fire of the `all`/`allow` schedule due
  while the world is healed has exactly one job, enqueued at most `FIRE_BOUND_S` after
  its fire time (a new leader may need a lease TTL to take over).
* `schedule_policies`: no fire enqueued later than its catch-up window after its time;
  a `latest` or `skip` schedule enqueues at most one fire a pass; an `overlap: skip`
  schedule's job is enqueued only once the previous one ended; a `cancel_previous`
  one's only once the previous ended or was asked to cancel.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import attrs

from taskyard.adapters.memory import InMemoryJobStore, MemoryState, Recorded
from taskyard.domain.errors import (
    ScheduleExists,
    ScheduleNotFound,
    StoreUnavailable,
    ValidationError,
)
from taskyard.domain.model import CatchUp, Job, Overlap
from taskyard.domain.ports import JobStore
from taskyard.domain.schedules import Every, ScheduleSpec, fire_key, parse_change, parse_schedule
from taskyard.simulation.checker import Violation
from taskyard.simulation.clocks import TrueClock, at_s
from taskyard.simulation.rand import Streams
from taskyard.simulation.scenario import Scenario
from taskyard.simulation.workload import Script


class World(Protocol):
    """What the schedules need of the world (`taskyard.simulation.world.World`)."""

    scenario: Scenario
    state: MemoryState
    clock: TrueClock
    streams: Streams

    @property
    def now(self) -> float: ...

    def at(self, t: float, event: Callable[[], None]) -> None: ...

    def note(self, who: str, what: str) -> None: ...


FIRE_BOUND_S = 20.0
"""How late after its fire time (or after healing) a due fire may be enqueued while some
scheduler can reach the store: a lease TTL (10 s) for a new leader, the store's backoff
after an outage, and a few passes."""
STOP_AFTER_HEAL_S = 30.0
"""The schedules are paused this long after healing, so that the world can go quiet."""
TICK = "tick"
"""The schedule whose every fire the liveness invariant follows."""
SCRIPT_BASE = 100_000
"""Script numbers of scheduled jobs (apart from the workload's plans)."""


def _declared(rng: random.Random, n: int, duration_s: float, **fields: Any) -> ScheduleSpec:
    """A schedule as code or a client declares it (checked by `parse_schedule`)."""
    spec, _ = parse_schedule(
        {
            "task": "work",
            "args": Script(n=SCRIPT_BASE + n, duration_s=duration_s).to_args(),
            "max_attempts": rng.randint(1, 3),
            "backoff": {"base_seconds": 0.5, "max_seconds": 2.0, "jitter": "full"},
            **fields,
        }
    )
    return spec


def draw_schedules(rng: random.Random) -> tuple[ScheduleSpec, ...]:
    """The world's schedules: one of each policy worth watching."""
    return (
        _declared(
            rng,
            1,
            rng.choice((0.05, 0.3, 1.5)),
            name=TICK,
            every_seconds=1,
            catch_up="all",
            catch_up_window_seconds=60,
            overlap="allow",
        ),
        _declared(
            rng,
            2,
            rng.uniform(0.5, 4.0),
            name="pulse",
            every_seconds=rng.choice((2, 3)),
            catch_up=rng.choice(("latest", "skip")),
            catch_up_window_seconds=rng.choice((5, 30)),
            overlap="skip",
        ),
        _declared(
            rng,
            3,
            rng.uniform(1.0, 8.0),
            name="relay",
            every_seconds=rng.choice((3, 5)),
            catch_up=rng.choice(("skip", "latest", "all")),
            catch_up_window_seconds=20,
            overlap="cancel_previous",
        ),
        _declared(
            rng,
            4,
            0.2,
            name="minutely",
            cron="* * * * *",
            timezone=rng.choice(("UTC", "Asia/Kolkata")),
        ),
    )


@attrs.define(kw_only=True)
class ScheduleLog:
    """What the world did to its schedules (the invariants need the times)."""

    specs: tuple[ScheduleSpec, ...]
    stopped_at_s: float | None = None


REFUSED_CHANGES: tuple[object, ...] = (
    {"timezone": "Nowhere/Land", "cron": "* * * * *"},
    {"timezone": "../etc/localtime", "cron": "* * * * *"},
    {"cron": "* * *"},
    {"cron": "61 * * * *"},
    {"timezone": "Europe/Berlin"},
    {"priority": 1000},
    "every second",
)
"""Changes the API would refuse (422), as an operator might send them."""


def install(world: World, specs: Sequence[ScheduleSpec]) -> ScheduleLog:
    """Declare `specs` at the start (the last one through the API, the others as code
    would), sync them again whenever a scheduler boots, let an operator pause, resume and
    change some during the faults (and have bad changes refused), and pause them all (the
    API's one deleted) `STOP_AFTER_HEAL_S` after healing."""
    log = ScheduleLog(specs=tuple(specs))
    if not specs:
        return log
    operator = _operator(world)
    made = operator.create_schedule(specs[-1])
    world.note("operator", f"schedule {made.name} created: {made.to_json()['next_fire_at']}")
    try:
        operator.create_schedule(specs[-1])
    except ScheduleExists as exists:
        world.note("operator", f"refused: {exists}")
    operator.sync_schedules(specs)
    safety_s = world.scenario.safety_s
    rng = world.streams.get("schedules/operator")
    pause_at = rng.uniform(0.2, 0.5) * safety_s
    resume_at = pause_at + rng.uniform(1.0, 8.0)

    def pause() -> None:
        for _ in range(2):  # a second click changes nothing
            paused = operator.pause_schedule("pulse", paused=True)
        world.note("operator", f"schedule pulse paused: {paused.to_json()['recent_fires'][:1]}")

    def resume() -> None:
        operator.pause_schedule("pulse", paused=False)
        world.note("operator", "schedule pulse resumed")

    def change() -> None:
        relay = operator.schedule("relay").spec
        for refused in REFUSED_CHANGES:
            try:
                parse_change(relay, refused)
            except ValidationError as problem:
                world.note("operator", f"schedule relay: change refused ({problem})")
        operator.update_schedule(relay)  # the same spec: nothing changes
        changed, _ = parse_change(relay, {"priority": 1, "every_seconds": 4})
        operator.update_schedule(changed)
        world.note("operator", "schedule relay changed (priority 1, every 4 s)")

    world.at(pause_at, pause)
    world.at(resume_at, resume)
    world.at(rng.uniform(0.3, 0.9) * safety_s, change)
    return log


def _operator(world: World) -> JobStore:
    """A person's view of the store: never faulted (their call is not what is tested)."""
    return InMemoryJobStore(world.clock, state=world.state)


def on_scheduler_boot(store: JobStore, specs: Sequence[ScheduleSpec]) -> None:
    """What a scheduler does when it starts: sync the schedules its code declares (a
    failed sync is retried at its next start; the schedules are in the store already)."""
    with contextlib.suppress(StoreUnavailable):
        store.sync_schedules(specs)


def stop(world: World, log: ScheduleLog) -> None:
    """Delete the schedule the API created and pause the others (the world can then go
    quiet); the jobs they fired stay."""
    operator = _operator(world)
    created = log.specs[-1].name
    operator.delete_schedule(created)
    for schedule in operator.schedules():
        operator.pause_schedule(schedule.name, paused=True)
    try:
        operator.pause_schedule(created, paused=True)
    except ScheduleNotFound as gone:
        world.note("operator", f"refused: {gone}")
    log.stopped_at_s = world.now
    world.note("operator", "every schedule paused")


# --- invariants ---------------------------------------------------------------------------


def _fired(jobs: Iterable[Job]) -> dict[str, list[Job]]:
    by_schedule: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        if job.schedule is not None:
            by_schedule[job.schedule.name].append(job)
    for fired in by_schedule.values():
        fired.sort(key=lambda j: (j.schedule.fire_at if j.schedule else j.created_at, j.id))
    return by_schedule


def check_schedules(
    jobs: Mapping[UUID, Job],
    log: ScheduleLog,
    *,
    changes: Sequence[Recorded],
    healed_at_s: float | None,
    end_s: float,
) -> dict[str, list[Violation]]:
    """The schedule invariants over every job in the store at the end of a run, and every
    change the store committed (a fired job may be retried by hand later: what counts
    for overlap is what it was when the next fire was enqueued)."""
    fired = _fired(jobs.values())
    versions: dict[UUID, list[Job]] = defaultdict(list)
    for change in changes:
        if change.after.schedule is not None:
            versions[change.after.id].append(change.after)
    return {
        "schedule_fire_once": list(_fire_once(fired)),
        "schedule_fires_in_time": list(_in_time(fired, log, healed_at_s, end_s)),
        "schedule_policies": list(_policies(fired, log, versions)),
    }


def _as_of(versions: Sequence[Job], moment: datetime) -> Job | None:
    """The job as it was at `moment` (its last change committed at or before it)."""
    found = None
    for version in versions:
        if version.updated_at > moment:
            break
        found = version
    return found


def _fire_once(fired: Mapping[str, list[Job]]) -> Iterable[Violation]:
    yield from _doubles(fired)
    for name in sorted(fired):
        for job in fired[name]:
            assert job.schedule is not None
            fire_at = job.schedule.fire_at
            if job.idempotency_key != fire_key(name, fire_at):
                yield Violation(
                    invariant="schedule_fire_once",
                    message=f"schedule {name}'s job for {at_s(fire_at):.3f} has key "
                    f"{job.idempotency_key!r}, not its fire's",
                    job_id=job.id,
                )


def _doubles(fired: Mapping[str, list[Job]]) -> Iterable[Violation]:
    for name in sorted(fired):
        seen: dict[object, Job] = {}
        for job in fired[name]:
            assert job.schedule is not None
            fire_at = job.schedule.fire_at
            if fire_at in seen:
                yield Violation(
                    invariant="schedule_fire_once",
                    message=f"schedule {name} fired {at_s(fire_at):.3f} twice: jobs "
                    f"{str(seen[fire_at].id)[-8:]} and {str(job.id)[-8:]}",
                    job_id=job.id,
                    at=job.created_at,
                )
            seen[fire_at] = job


def _in_time(
    fired: Mapping[str, list[Job]], log: ScheduleLog, healed_at_s: float | None, end_s: float
) -> Iterable[Violation]:
    spec = next((s for s in log.specs if s.name == TICK), None)
    if spec is None or healed_at_s is None:
        return
    stop_s = log.stopped_at_s if log.stopped_at_s is not None else end_s
    by_fire: dict[float, list[Job]] = defaultdict(list)
    for job in fired.get(TICK, []):
        assert job.schedule is not None
        by_fire[round(at_s(job.schedule.fire_at), 3)].append(job)
    assert isinstance(spec.timing, Every)
    period = spec.timing.seconds
    first = int(healed_at_s // period) + 1
    last = int((stop_s - FIRE_BOUND_S) // period)
    for k in range(first, last + 1):
        fire_s = round(k * period, 3)
        found = by_fire.get(fire_s, [])
        if len(found) != 1:
            yield Violation(
                invariant="schedule_fires_in_time",
                message=f"schedule {TICK}'s fire at {fire_s:.3f} (after healing at "
                f"{healed_at_s:.3f}) has {len(found)} jobs",
            )
        elif at_s(found[0].created_at) > fire_s + FIRE_BOUND_S:
            yield Violation(
                invariant="schedule_fires_in_time",
                message=f"schedule {TICK}'s fire at {fire_s:.3f} was enqueued at "
                f"{at_s(found[0].created_at):.3f}, more than {FIRE_BOUND_S:g} s late",
                job_id=found[0].id,
            )


def _policies(
    fired: Mapping[str, list[Job]], log: ScheduleLog, versions: Mapping[UUID, Sequence[Job]]
) -> Iterable[Violation]:
    specs = {s.name: s for s in log.specs}

    def bad(message: str, job: Job) -> Violation:
        return Violation(
            invariant="schedule_policies", message=message, job_id=job.id, at=job.created_at
        )

    for name in sorted(fired):
        spec = specs.get(name)
        if spec is None:
            continue
        jobs = fired[name]
        window = timedelta(seconds=spec.catch_up_window_s)
        per_pass: dict[object, int] = defaultdict(int)
        for job in jobs:
            assert job.schedule is not None
            if job.created_at - job.schedule.fire_at > window:
                yield bad(f"schedule {name} enqueued a fire older than its window", job)
            per_pass[job.created_at] += 1
            if spec.catch_up is not CatchUp.ALL and per_pass[job.created_at] > 1:
                yield bad(f"schedule {name} ({spec.catch_up}) enqueued two fires at once", job)
        for previous, job in itertools.pairwise(jobs):
            then = _as_of(versions.get(previous.id, ()), job.created_at)
            ended = then is not None and then.state.is_terminal
            if spec.overlap is Overlap.SKIP and not ended:
                yield bad(f"schedule {name} (overlap skip) enqueued over an open job", job)
            asked = ended or (then is not None and then.cancel_requested)
            if spec.overlap is Overlap.CANCEL_PREVIOUS and not asked:
                yield bad(f"schedule {name} (cancel_previous) left the previous job be", job)
