"""`/v1/schedules`: create, read, change, pause, resume and delete over REST; refusals name
the field; a fired job shows its fire; the metrics count the fires."""

from __future__ import annotations

from typing import Any

import pytest

from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from tests.api.conftest import Api, assert_problem

NIGHTLY: dict[str, Any] = {
    "name": "reports.nightly",
    "task": "sleep",
    "args": {"seconds": 0},
    "cron": "30 2 * * *",
    "timezone": "America/New_York",
    "queue": "reports",
}


def test_a_schedule_is_created_read_listed_changed_and_deleted(api: Api) -> None:
    made = api.post("/v1/schedules", NIGHTLY)
    assert made.status_code == 201, made.text
    assert made.headers["location"] == "/v1/schedules/reports.nightly"
    body = made.json
    assert (body["cron"], body["every_seconds"], body["timezone"]) == (
        "30 2 * * *",
        None,
        "America/New_York",
    )
    assert (body["catch_up"], body["overlap"], body["paused"]) == ("latest", "skip", False)
    assert body["next_fire_at"].endswith(":30:00.000Z") and body["recent_fires"] == []
    assert api.get("/v1/schedules/reports.nightly").json == body
    assert [s["name"] for s in api.get("/v1/schedules").json["schedules"]] == ["reports.nightly"]
    assert_problem(api.post("/v1/schedules", NIGHTLY), 409)

    changed = api.call("PATCH", "/v1/schedules/reports.nightly", json_body={"every_seconds": 60})
    assert changed.status_code == 200, changed.text
    assert (changed.json["cron"], changed.json["every_seconds"]) == (None, 60)
    assert changed.json["timezone"] == "UTC" and changed.json["queue"] == "reports"
    paused = api.post("/v1/schedules/reports.nightly/pause")
    assert paused.status_code == 200 and paused.json["paused"] is True
    resumed = api.post("/v1/schedules/reports.nightly/resume")
    assert resumed.json["paused"] is False
    deleted = api.call("DELETE", "/v1/schedules/reports.nightly")
    assert deleted.status_code == 200 and deleted.json["name"] == "reports.nightly"
    assert_problem(api.get("/v1/schedules/reports.nightly"), 404)
    assert_problem(api.call("DELETE", "/v1/schedules/reports.nightly"), 404)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"cron": None}, "cron"),
        ({"every_seconds": 60}, "cron"),
        ({"cron": None, "every_seconds": 0.5}, "every_seconds"),
        ({"cron": None, "every_seconds": 1e300}, "every_seconds"),
        ({"cron": None, "every_seconds": 5, "timezone": "Europe/Berlin"}, "timezone"),
        ({"catch_up": "never"}, "catch_up"),
        ({"catch_up_window_seconds": 0}, "catch_up_window_seconds"),
        ({"overlap": "queue"}, "overlap"),
        ({"name": "a\x00b"}, "name"),
        ({"name": ""}, "name"),
        ({"task": "x" * 201}, "task"),
        ({"cron": "* * * * *\x00"}, "cron"),
        ({"priority": 1000}, "priority"),
        ({"paused": "yes"}, "paused"),
        ({"nope": 1}, "nope"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(
    api: Api, changes: dict[str, Any], field: str
) -> None:
    body = {**NIGHTLY, **changes}
    body = {k: v for k, v in body.items() if v is not None or k != "cron"}
    assert_problem(api.post("/v1/schedules", body), 422, field)
    assert api.store.schedules() == [], "nothing stored"


def test_a_change_is_checked_as_a_whole_schedule(api: Api) -> None:
    api.post("/v1/schedules", NIGHTLY)
    path = "/v1/schedules/reports.nightly"
    assert_problem(api.call("PATCH", path, json_body={"timezone": "Nowhere/Land"}), 422, "timezone")
    assert_problem(api.call("PATCH", path, json_body={"name": "other"}), 422, "name")
    assert_problem(api.call("PATCH", path, json_body={}), 422)
    assert api.get(path).json["timezone"] == "America/New_York", "nothing changed"


@pytest.mark.parametrize("name", ["a\x00b", "..", "a b", "x" * 101])
def test_a_malformed_name_in_the_path_is_not_found(api: Api, name: str) -> None:
    from urllib.parse import quote

    assert api.get(f"/v1/schedules/{quote(name, safe='')}").status_code == 404


def test_a_fired_job_carries_its_fire_and_the_schedule_shows_it(api: Api) -> None:
    made = api.post(
        "/v1/schedules", {"name": "tick", "task": "sleep", "every_seconds": 5, "overlap": "allow"}
    )
    scheduler = Scheduler(
        store=api.store,
        coordinator=None,
        clock=api.clock,
        config=SchedulerConfig(scheduler_id="s1"),
    )
    api.clock.advance(11)
    scheduler.tick()
    shown = api.get("/v1/schedules/tick").json
    (fire,) = shown["recent_fires"][:1]
    assert fire["outcome"] == "enqueued" and shown["fires"]["enqueued"] == 1
    assert shown["fires"]["missed"] == 1, "the older fire of the gap (catch-up latest)"
    job = api.get(f"/v1/jobs/{fire['job_id']}").json
    assert job["schedule"] == {"name": "tick", "fire_at": fire["fire_at"]}
    assert job["idempotency_key"] == f"schedule:tick@{fire['fire_at'][:-5]}.000000Z"
    assert made.json["next_fire_at"] <= fire["fire_at"]
    metrics = api.get("/metrics").text
    assert 'taskyard_schedule_fires_total{outcome="enqueued",schedule="tick"} 1.0' in metrics
    assert 'taskyard_schedule_fires_total{outcome="missed",schedule="tick"} 1.0' in metrics
    assert 'taskyard_schedule_fire_lag_seconds_count{schedule="tick"} 1.0' in metrics
