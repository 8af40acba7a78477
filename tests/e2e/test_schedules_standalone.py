"""`taskyard standalone` on SQLite with two every-second schedules, SIGKILLed mid-way and
restarted: each fire time has exactly one job, and the fires missed while it was down are
handled as each schedule's catch-up policy says (`all`: every one enqueued late; `skip`:
none of the backlog)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from taskyard.adapters.clock import SystemClock
from taskyard.adapters.sqlite import SqliteJobStore
from taskyard.domain.model import Job
from taskyard.domain.ports import JobQuery
from tests.e2e.harness import Api, Procs, clean_environment
from tests.eventually import eventually

DOWN_S = 3.0


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteJobStore]:
    with SqliteJobStore(tmp_path / "beat.db", clock=SystemClock()) as store:
        yield store


def _jobs(store: SqliteJobStore, name: str) -> list[Job]:
    jobs = store.list_jobs(JobQuery(limit=1000)).jobs
    return [j for j in jobs if j.schedule is not None and j.schedule.name == name]


def _fires(store: SqliteJobStore, name: str) -> list[datetime]:
    return sorted(j.schedule.fire_at for j in _jobs(store, name) if j.schedule)


def test_a_sigkilled_standalone_fires_each_second_once_and_catches_up_by_policy(
    procs: Procs, tmp_path: Path, sqlite_store: SqliteJobStore, request: pytest.FixtureRequest
) -> None:
    env = clean_environment(TASKYARD_POLL_INTERVAL_SECONDS="0.2")
    args = ["standalone", "--db", f"sqlite:///{tmp_path / 'beat.db'}", "--port", "0"]
    first = procs.start("standalone-1", args, env=env)
    api = Api(first.url())
    request.addfinalizer(api.close)
    for name, policy in (("all", "all"), ("skip", "skip")):
        body = {
            "name": name,
            "task": "sleep",
            "args": {"seconds": 0},
            "every_seconds": 1,
            "catch_up": policy,
            "overlap": "allow",
        }
        assert api.call("POST", "/v1/schedules", body)[0] == 201
    eventually(lambda: len(_fires(sqlite_store, "skip")) >= 3, timeout_s=30, what="fires")
    first.kill()
    killed_at = sqlite_store.now()
    time.sleep(DOWN_S)  # the fires of these seconds are missed while nothing runs
    second = procs.start("standalone-2", args, env=env)
    api.close()
    api.url = second.url()
    restarted_at = sqlite_store.now()
    eventually(
        lambda: len([f for f in _fires(sqlite_store, "skip") if f > restarted_at]) >= 3,
        timeout_s=30,
        what="fires after the restart",
    )
    api.ok("POST", "/v1/schedules/all/pause")
    api.ok("POST", "/v1/schedules/skip/pause")
    assert second.stop() == 0

    second_ = timedelta(seconds=1)
    for name in ("all", "skip"):
        fires = _fires(sqlite_store, name)
        assert len(fires) == len(set(fires)), f"{name}: a fire time with two jobs"
    every = _fires(sqlite_store, "all")
    assert len(every) == int((every[-1] - every[0]) / second_) + 1, "all: none missing"
    skipped = _fires(sqlite_store, "skip")
    gaps = [b - a for a, b in itertools.pairwise(skipped)]
    # The backlog: fires that `all` enqueued more than a second late, each due while a
    # later fire was due too. `skip` enqueued none of them.
    down = sorted(
        j.schedule.fire_at
        for j in _jobs(sqlite_store, "all")
        if j.schedule and j.created_at - j.schedule.fire_at > second_
    )
    assert len(down) >= 2 and killed_at < down[0] < restarted_at, "the kill left a backlog"
    assert max(gaps) > len(down) * second_, "skip: the backlog was not caught up"
    assert not set(down) & set(skipped)
    shown = {s.name: s for s in sqlite_store.schedules()}
    assert shown["skip"].counts.missed >= len(down)
    print(
        f"\ne2e schedules: down {len(down)} fires; all enqueued {len(every)} fires with none "
        f"missing, skip enqueued {len(skipped)} and missed {shown['skip'].counts.missed}"
    )
