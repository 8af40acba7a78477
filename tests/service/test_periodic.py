"""`@app.periodic`: a schedule declared in code is synced into the store when a worker of
the app starts, and its fires run the task with the declared args."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import taskyard
from taskyard.domain.model import Overlap
from taskyard.domain.schedules import Cron, Every
from taskyard.testing import TestRunner

app = taskyard.App("memory://")
seen: list[int] = []


@app.periodic(every=timedelta(seconds=30), args={"n": 7}, overlap="allow")
@app.task(name="reports.tick", queue="reports", max_attempts=2)
def tick(n: int) -> None:
    seen.append(n)


@app.periodic(cron="30 2 * * *", timezone="America/New_York", name="nightly", catch_up="all")
@app.task(name="reports.nightly")
def nightly() -> None: ...


def test_a_worker_syncs_the_declared_schedules_and_their_fires_run() -> None:
    assert [s.name for s in app.schedules] == ["nightly", "reports.tick"]
    seen.clear()
    with TestRunner(app, start=datetime(2026, 3, 7, 12, tzinfo=UTC)) as runner:
        assert runner.store.schedules() == []
        runner.run_until_idle()  # the worker's first tick syncs
        stored = {s.name: s for s in runner.store.schedules()}
        assert stored["reports.tick"].spec.timing == Every(seconds=30)
        assert stored["reports.tick"].spec.overlap is Overlap.ALLOW
        assert stored["reports.tick"].spec.job.queue == "reports", "the task's defaults"
        assert stored["nightly"].spec.timing == Cron(
            expression="30 2 * * *", timezone="America/New_York"
        )
        assert stored["nightly"].next_fire_at == datetime(2026, 3, 8, 7, tzinfo=UTC), (
            "03:00 EDT: 02:30 does not exist on the spring-forward day"
        )
        runner.advance(30)
        runner.advance(30)
        assert seen == [7, 7]
        [first, *_] = runner.jobs()
        assert first.schedule is not None and first.schedule.name == "reports.tick"


def test_a_bad_declaration_is_refused_naming_the_field() -> None:
    other = taskyard.App("memory://")

    @other.task(name="t")
    def t() -> None: ...

    with pytest.raises(taskyard.ValidationError, match="timezone"):
        other.periodic(cron="* * * * *", timezone="Nowhere/Land")(t)
    with pytest.raises(taskyard.ValidationError, match="cron"):
        other.periodic(cron="* * * * * * *")(t)
    with pytest.raises(taskyard.ValidationError, match="cron"):
        other.periodic()(t)
    assert other.schedules == []
