"""The REST API fills a task's defaults and checks its args from the task catalog the
workers publish; a task nobody published is accepted with a warning, or refused when the
setting says so; `GET /v1/tasks` shows the catalog."""

from __future__ import annotations

import pytest

import taskyard
from taskyard.domain.catalog import UNKNOWN_TASK_REFUSAL, UNKNOWN_TASK_WARNING
from tests.api.conftest import Api, make_api

app = taskyard.App("memory://")


@app.task(name="emails.send", queue="emails", max_attempts=5, timeout=1, priority=4)
def send(ctx: taskyard.JobContext, user_id: int, lang: str = "en", **more: str) -> None: ...


@app.task(name="reports.build", backoff={"base_seconds": 7, "jitter": "none"})
def build(day: str, *, pages: int = 1) -> None: ...


def _published(api: Api) -> None:
    api.store.publish_tasks([send.spec.info(), build.spec.info()], worker="w-7")


def test_a_submission_gets_the_tasks_defaults_for_what_it_leaves_out(api: Api) -> None:
    _published(api)
    job = api.submit(task="emails.send", args={"user_id": 1})
    assert (job["queue"], job["max_attempts"], job["timeout_seconds"], job["priority"]) == (
        "emails",
        5,
        1,
        4,
    )
    assert "warnings" not in job
    own = api.submit(
        task="emails.send",
        args={"user_id": 1},
        queue="bulk",
        timeout_seconds=None,
        backoff={"factor": 3},
    )
    assert (own["queue"], own["timeout_seconds"], own["max_attempts"]) == ("bulk", None, 5)
    report = api.submit(task="reports.build", args={"day": "mon"}, backoff={"max_seconds": 60})
    assert report["backoff"] == {
        "base_seconds": 7,
        "factor": 2.0,
        "max_seconds": 60,
        "jitter": "none",
    }


def test_args_are_checked_against_the_published_arguments(api: Api) -> None:
    _published(api)
    refused = api.post("/v1/jobs", {"task": "reports.build", "args": {"dya": "mon"}})
    assert refused.status_code == 422
    assert [(e["field"], e["message"]) for e in refused.json["errors"]] == [
        ("args.dya", "unknown argument (it takes 'day' and 'pages')"),
        ("args.day", "required"),
    ]
    batch = api.post(
        "/v1/jobs/batch",
        {
            "jobs": [
                {"task": "emails.send", "args": {"user_id": 1, "x": "any"}},
                {"task": "reports.build"},
            ]
        },
    )
    assert batch.status_code == 422
    assert [e["field"] for e in batch.json["errors"]] == ["jobs[1].args.day"]
    assert api.stored() == [], "a refused submission stores nothing"


def test_a_task_nobody_published_is_accepted_with_a_warning(api: Api) -> None:
    _published(api)
    answer = api.post("/v1/jobs", {"task": "emails.sned", "args": {"user_id": 1}})
    assert answer.status_code == 201
    assert answer.json["warnings"] == [{"field": "task", "message": UNKNOWN_TASK_WARNING}]
    assert answer.json["queue"] == "default", "no defaults but the contract's"
    batch = api.post("/v1/jobs/batch", {"jobs": [{"task": "sleep"}, {"task": "nobody.has"}]})
    assert batch.status_code == 201
    assert batch.json["warnings"] == [{"field": "jobs[1].task", "message": UNKNOWN_TASK_WARNING}]
    assert len(api.stored()) == 3


def test_with_unknown_task_refuse_such_a_submission_is_refused_and_nothing_stored() -> None:
    api = make_api(unknown_task="refuse")
    _published(api)
    refused = api.post("/v1/jobs", {"task": "emails.sned", "args": {"user_id": 1}})
    assert refused.status_code == 422
    assert refused.json["errors"] == [{"field": "task", "message": UNKNOWN_TASK_REFUSAL}]
    batch = api.post("/v1/jobs/batch", {"jobs": [{"task": "sleep"}, {"task": "nobody.has"}]})
    assert batch.status_code == 422
    assert [e["field"] for e in batch.json["errors"]] == ["jobs[1].task"]
    assert api.stored() == []
    assert api.submit(task="emails.send", args={"user_id": 2})["queue"] == "emails"
    assert api.submit(task="sleep")["queue"] == "default", "a built-in task is always known"


def test_the_catalog_is_listed(api: Api) -> None:
    assert api.get("/v1/tasks").json == {"tasks": []}
    _published(api)
    tasks = api.get("/v1/tasks").json["tasks"]
    assert [t["name"] for t in tasks] == ["emails.send", "reports.build"]
    emails = tasks[0]
    assert emails["params"] == [
        {"name": "user_id", "kind": "required"},
        {"name": "lang", "kind": "optional"},
    ]
    assert emails["any_other"] is True and tasks[1]["any_other"] is False
    assert (emails["queue"], emails["max_attempts"], emails["timeout_seconds"]) == ("emails", 5, 1)
    assert emails["published_by"] == "w-7"
    assert emails["published_at"] == "2026-11-22T10:00:00.000Z"


@pytest.mark.parametrize(
    "params", [{"x": "1"}, {"limit": "5"}, {"\x00": "1"}, {"name": "a" * 5000}]
)
def test_the_catalog_route_takes_no_parameter(api: Api, params: dict[str, str]) -> None:
    assert api.get("/v1/tasks", params=params).status_code == 400


def test_the_catalog_route_needs_a_token() -> None:
    api = make_api(tokens=("t0ken-one",))
    assert api.get("/v1/tasks", token="").status_code == 401
    assert api.get("/v1/tasks").status_code == 200
