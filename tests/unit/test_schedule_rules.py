"""The schedule rules, pure: fire times (cron in a zone across DST, `every` intervals),
catch-up within a window, and overlap."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskyard.domain import schedules as sch
from taskyard.domain.model import CatchUp, Overlap
from taskyard.domain.schedules import Cron, Every, FireOutcome, ScheduleSpec
from taskyard.domain.submission import Submission

NEW_YORK = ZoneInfo("America/New_York")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(timing: sch.Timing, **changes: object) -> ScheduleSpec:
    spec = ScheduleSpec(name="s", timing=timing, job=Submission(task="t"))
    return attrs.evolve(spec, **changes)


def _local_fires(cron: str, start: datetime, end: datetime) -> list[datetime]:
    timing = Cron(expression=cron, timezone="America/New_York")
    return [f.astimezone(NEW_YORK) for f in sch.fires_between(timing, start, end, limit=100)]


# --- DST, both transitions in one zone (America/New_York, 2026) -----------------------------


def test_a_daily_0230_fires_once_at_0300_on_the_spring_forward_day() -> None:
    """02:30 does not exist on 2026-03-08 in New York (02:00 EST jumps to 03:00 EDT): the
    fire is at the first instant after the gap, 03:00 EDT (07:00 UTC), and only once."""
    fires = _local_fires(
        "30 2 * * *", datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 3, 10, 12, tzinfo=UTC)
    )
    assert [f.isoformat() for f in fires] == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_a_daily_0130_fires_once_on_the_fall_back_day() -> None:
    """01:30 happens twice on 2026-11-01 in New York (01:59 EDT falls back to 01:00 EST):
    the schedule fires at the first 01:30 (EDT) and not again an hour later."""
    fires = _local_fires(
        "30 1 * * *", datetime(2026, 10, 31, 12, tzinfo=UTC), datetime(2026, 11, 3, 12, tzinfo=UTC)
    )
    assert [f.isoformat() for f in fires] == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]


def test_asking_from_inside_the_repeated_hour_never_answers_an_earlier_time() -> None:
    """06:00 UTC is 01:00 EST, after the day's 01:30 EDT fire: the next is the next day's."""
    timing = Cron(expression="30 1 * * *", timezone="America/New_York")
    moment = datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert timing.after(moment) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1), timezones=st.just(UTC)
    ),
)
def test_a_daily_cron_fires_once_per_local_day_and_always_forward(
    minute: int, hour: int, start: datetime
) -> None:
    timing = Cron(expression=f"{minute} {hour} * * *", timezone="America/New_York")
    fires = sch.fires_between(timing, start, start + timedelta(days=40), limit=100)
    assert all(a < b for a, b in itertools.pairwise(fires)), "strictly forward"
    days = [f.astimezone(NEW_YORK).date() for f in fires]
    assert len(days) == len(set(days)), "at most one fire a local day"
    assert len(fires) >= 39, "and one on (nearly) every day"
    for fire in fires:
        assert timing.after(fire - timedelta(microseconds=1)) == fire


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.integers(1, 7200),
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_every_fires_at_multiples_of_its_period_after_any_moment(
    seconds: int, moment: datetime
) -> None:
    timing = Every(seconds=seconds)
    fire = timing.after(moment)
    assert moment < fire <= moment + timedelta(seconds=seconds)
    assert (fire - sch.EPOCH) % timedelta(seconds=seconds) == timedelta(0)
    end = moment + timedelta(seconds=seconds * 5)
    listed = sch.fires_between(timing, moment, end, limit=100)
    assert sch.count_between(timing, moment, end) == len([f for f in listed if f < end]), (
        "arithmetic counting agrees with walking"
    )
    assert timing.latest(moment, end) == listed[-1]


@pytest.mark.parametrize(
    ("cron", "zone", "field"),
    [
        ("61 * * * *", "UTC", "cron"),
        ("* * *", "UTC", "cron"),
        ("*/5 * * * * *", "UTC", "cron"),
        ("* * * * *", "Mars/Olympus", "timezone"),
        ("* * * * *", "../etc/passwd", "timezone"),
    ],
)
def test_a_bad_cron_or_zone_is_refused_naming_the_field(cron: str, zone: str, field: str) -> None:
    with pytest.raises(sch.TimingError) as caught:
        Cron(expression=cron, timezone=zone).check()
    assert caught.value.field == field


# --- catch-up and overlap -------------------------------------------------------------------


def _schedule(spec: ScheduleSpec, next_fire_at: datetime) -> sch.Schedule:
    return sch.Schedule(spec=spec, next_fire_at=next_fire_at, created_at=T0, updated_at=T0)


def _outage(policy: CatchUp, *, window_s: float = 3600.0, down_s: int = 10) -> sch.FirePlan:
    """A 1-second schedule whose scheduler came back `down_s` seconds after a fire was due."""
    spec = _spec(
        Every(seconds=1), catch_up=policy, catch_up_window_s=window_s, overlap=Overlap.ALLOW
    )
    return sch.plan_fires(
        _schedule(spec, T0),
        now=T0 + timedelta(seconds=down_s, milliseconds=500),
        previous_open=False,
    )


def test_catch_up_all_enqueues_every_missed_fire_oldest_first() -> None:
    plan = _outage(CatchUp.ALL)
    assert [f.outcome for f in plan.fires] == [FireOutcome.ENQUEUED] * 11
    assert plan.next_fire_at == T0 + timedelta(seconds=11)


def test_catch_up_latest_enqueues_only_the_newest_and_counts_the_rest_missed() -> None:
    plan = _outage(CatchUp.LATEST)
    assert [f.fire_at for f in plan.enqueued] == [T0 + timedelta(seconds=10)]
    assert plan.counts(T0).missed == 10
    assert plan.next_fire_at == T0 + timedelta(seconds=11)


def test_catch_up_skip_enqueues_nothing_of_a_backlog() -> None:
    plan = _outage(CatchUp.SKIP)
    assert plan.enqueued == []
    assert plan.counts(T0).missed == 11
    on_time = _outage(CatchUp.SKIP, down_s=0)
    assert [f.fire_at for f in on_time.enqueued] == [T0], "a lone due fire is not a backlog"


def test_fires_older_than_the_window_are_missed_whatever_the_policy() -> None:
    plan = _outage(CatchUp.ALL, window_s=3.0)
    assert [f.fire_at for f in plan.enqueued] == [T0 + timedelta(seconds=s) for s in (8, 9, 10)]
    assert plan.counts(T0).missed == 8


@pytest.mark.parametrize(
    ("overlap", "enqueued", "cancelled"),
    [(Overlap.ALLOW, 1, 0), (Overlap.SKIP, 0, 0), (Overlap.CANCEL_PREVIOUS, 1, 1)],
)
def test_overlap_with_the_previous_job_still_open(
    overlap: Overlap, enqueued: int, cancelled: int
) -> None:
    spec = _spec(Every(seconds=60), overlap=overlap)
    previous = sch.fire_job(spec, T0).id
    schedule = attrs.evolve(_schedule(spec, T0 + timedelta(minutes=1)), last_job_id=previous)
    plan = sch.plan_fires(schedule, now=T0 + timedelta(minutes=1, seconds=1), previous_open=True)
    assert len(plan.enqueued) == enqueued
    assert plan.cancel == ((previous,) if cancelled else ())
    if overlap is Overlap.SKIP:
        assert plan.counts(T0).overlap_skipped == 1
    closed = sch.plan_fires(schedule, now=T0 + timedelta(minutes=1), previous_open=False)
    assert len(closed.enqueued) == 1 and closed.cancel == (), "a finished job does not overlap"


@settings(max_examples=300, deadline=None)
@given(
    period=st.integers(1, 120),
    down_s=st.integers(0, 2000),
    window_s=st.integers(1, 1000),
    policy=st.sampled_from(CatchUp),
    overlap=st.sampled_from(Overlap),
    previous_open=st.booleans(),
)
def test_every_due_fire_is_decided_exactly_once(
    period: int,
    down_s: int,
    window_s: int,
    policy: CatchUp,
    overlap: Overlap,
    previous_open: bool,
) -> None:
    """Passes at any moments decide each fire time once: listed or counted, never twice,
    none left behind, and the next fire is in the future."""
    spec = _spec(
        Every(seconds=period), catch_up=policy, catch_up_window_s=window_s, overlap=overlap
    )
    schedule = attrs.evolve(
        _schedule(spec, T0), last_job_id=sch.fire_job(spec, T0 - timedelta(hours=1)).id
    )
    now = T0 + timedelta(seconds=down_s, milliseconds=250)
    plan = sch.plan_fires(schedule, now=now, previous_open=previous_open, limit=5000)
    due = sch.count_between(spec.timing, T0, now + timedelta(microseconds=1))
    listed = [f.fire_at for f in plan.fires]
    assert len(listed) == len(set(listed)), "no fire decided twice"
    counts = plan.counts(now)
    assert counts.enqueued + counts.missed + counts.overlap_skipped == due
    assert plan.next_fire_at > now and plan.next_fire_at == spec.timing.after(now)
    enqueued = plan.enqueued
    assert len(enqueued) <= (due if policy is CatchUp.ALL else 1)
    horizon = now - timedelta(seconds=window_s)
    assert all(f.fire_at >= horizon for f in enqueued), "nothing older than the window"
    if overlap is Overlap.SKIP and previous_open:
        assert enqueued == []
    if overlap is not Overlap.ALLOW and len(enqueued) > 1:
        assert overlap is Overlap.CANCEL_PREVIOUS and len(plan.cancel) >= len(enqueued) - 1
    after = sch.fired(schedule, plan, now=now)
    assert len(after.recent) <= sch.RECENT_FIRES_MAX
    again = sch.plan_fires(after, now=now, previous_open=False)
    assert again.fires == () and again.missed_unlisted == 0, "a second pass decides nothing"


def test_a_fire_job_is_keyed_by_its_fire_and_always_the_same() -> None:
    spec = _spec(Every(seconds=5), job=Submission(task="t", args={"a": 1}, queue="q"))
    job = sch.fire_job(spec, T0)
    assert job.idempotency_key == sch.fire_key("s", T0)
    assert job.schedule is not None and (job.schedule.name, job.schedule.fire_at) == ("s", T0)
    assert sch.fire_job(spec, T0) == job
    unkeyed = sch.fire_job(spec, T0, keyed=False, salt="x")
    assert unkeyed.idempotency_key is None and unkeyed.id != job.id


def test_a_spec_reads_back_from_its_json() -> None:
    spec = _spec(
        Cron(expression="*/5 * * * *", timezone="Europe/Berlin"),
        catch_up=CatchUp.ALL,
        overlap=Overlap.CANCEL_PREVIOUS,
        job=Submission(task="t", args={"x": [1]}, queue="q", priority=3, timeout_s=2.5),
    )
    assert sch.parse_schedule(spec.to_json()) == (spec, False)
    every = _spec(Every(seconds=2.5))
    assert sch.parse_schedule(every.to_json()) == (every, False)


def test_resuming_does_not_catch_up_the_pause() -> None:
    schedule = _schedule(_spec(Every(seconds=1)), T0)
    paused = sch.paused_as(schedule, paused=True, now=T0)
    resumed = sch.paused_as(paused, paused=False, now=T0 + timedelta(hours=1))
    assert resumed.next_fire_at == T0 + timedelta(hours=1, seconds=1)


def test_sync_creates_new_replaces_changed_and_keeps_state() -> None:
    kept = attrs.evolve(_schedule(_spec(Every(seconds=1)), T0), paused=True)
    changed_spec = attrs.evolve(kept.spec, job=Submission(task="t2"))
    new_spec = attrs.evolve(kept.spec, name="new")
    out = sch.sync_plan([kept], [changed_spec, new_spec], now=T0)
    by_name = {s.name: s for s in out}
    assert by_name["s"].spec == changed_spec and by_name["s"].paused, "the pause is state"
    assert by_name["new"].next_fire_at == T0 + timedelta(seconds=1)
    assert sch.sync_plan([kept], [kept.spec], now=T0) == [], "nothing changed, nothing written"
