"""Reading, listing, changing, cancelling and retrying jobs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskyard.domain.model import Job, JobState
from taskyard.entrypoints.api import jobs as jobs_module
from tests import factories as f
from tests.api.conftest import Api, assert_problem, make_api

UNKNOWN_ID = "0190f3c4-1a2b-7c3d-8e4f-0123456789ab"


def _claim(api: Api, job: Job) -> Job:
    claimed = f.claim_one(api.store, queues=frozenset({job.queue}), tasks=frozenset({job.task}))
    assert claimed.id == job.id, "the test claims the job it just made"
    return claimed


def dead_job(api: Api, **kwargs: Any) -> Job:
    kwargs.setdefault("task", "doomed")
    claimed = _claim(api, f.enqueue(api.store, max_attempts=1, **kwargs))
    api.store.report([f.fail(claimed, retryable=False)])
    job = api.store.get(claimed.id)
    assert job.state is JobState.DEAD
    return job


def succeeded_job(api: Api) -> Job:
    claimed = _claim(api, f.enqueue(api.store, task="fine"))
    api.store.report([f.succeed(claimed, result={"ok": True})])
    return api.store.get(claimed.id)


# --- one job ------------------------------------------------------------------------------


def test_a_job_is_read_by_its_id(api: Api) -> None:
    job = api.submit(args={"seconds": 1})
    result = api.get(f"/v1/jobs/{job['id']}")
    assert result.status_code == 200 and result.json == {**job, "waiting_reason": "no_free_worker"}


@pytest.mark.parametrize(
    "job_id",
    [
        UNKNOWN_ID,
        "not-a-uuid",
        UNKNOWN_ID.upper(),
        UNKNOWN_ID.replace("-", ""),
        "{" + UNKNOWN_ID + "}",
    ],
)
def test_an_unknown_or_malformed_id_is_not_found(api: Api, job_id: str) -> None:
    api.submit()
    for method, suffix in [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/cancel"),
        ("POST", "/retry"),
        ("GET", "/attempts"),
    ]:
        assert_problem(api.call(method, f"/v1/jobs/{job_id}{suffix}"), 404)
    assert_problem(api.call("PATCH", f"/v1/jobs/{job_id}", json_body={"priority": 1}), 404)


def test_a_finished_job_shows_its_result_and_lease_fields(api: Api) -> None:
    job = succeeded_job(api)
    got = api.get(f"/v1/jobs/{job.id}").json
    assert got["state"] == "succeeded" and got["result"] == {"ok": True}
    assert got["finished_at"] is not None and got["lease"] is None
    running = f.enqueue(api.store)
    f.claim_one(api.store, worker="w-7")
    lease = api.get(f"/v1/jobs/{running.id}").json["lease"]
    assert lease["worker"] == "w-7"
    assert lease["expires_at"] == "2026-11-22T10:00:30.000Z"


def test_attempts_are_listed_oldest_first_with_their_outcomes(api: Api) -> None:
    job = f.enqueue(api.store, max_attempts=2)
    first = f.claim_one(api.store, worker="w1")
    api.clock.advance(1.5)
    api.store.report([f.fail(first, message="boom")])
    api.clock.advance(60)
    api.store.promote_due(limit=10)
    second = f.claim_one(api.store, worker="w2")
    api.clock.advance(0.25)
    api.store.report([f.succeed(second)])
    result = api.get(f"/v1/jobs/{job.id}/attempts")
    attempts = result.json["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert [a["worker"] for a in attempts] == ["w1", "w2"]
    assert [a["outcome"] for a in attempts] == ["failed", "succeeded"]
    assert attempts[0]["error"] == {
        "type": "RuntimeError",
        "message": "boom",
        "traceback": "Traceback ...",
    }
    assert attempts[0]["duration_seconds"] == pytest.approx(1.5)
    assert attempts[1]["error"] is None
    assert api.get(f"/v1/jobs/{api.submit()['id']}/attempts").json == {"attempts": []}


# --- listing ------------------------------------------------------------------------------


def test_listing_is_newest_first_and_pages_with_an_opaque_cursor(api: Api) -> None:
    made = []
    for n in range(7):
        made.append(api.submit(args={"seconds": n})["id"])
        if n % 2:
            api.clock.advance(0.0004)  # several jobs share a millisecond, some a microsecond
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = api.get("/v1/jobs", params=params).json
        pages += 1
        seen.extend(j["id"] for j in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    assert pages == 3


def test_listing_filters_may_repeat_and_mean_any_of(api: Api) -> None:
    a = api.submit(task="a", queue="q1")["id"]
    b = api.submit(task="b", queue="q2")["id"]
    c = api.submit(task="c", queue="q2", delay_seconds=60)["id"]
    dead = str(dead_job(api, task="a", queue="q3").id)

    def ids(params: dict[str, Any]) -> set[str]:
        return {j["id"] for j in api.get("/v1/jobs", params=params).json["jobs"]}

    assert ids({"queue": ["q1", "q2"]}) == {a, b, c}
    assert ids({"state": "scheduled"}) == {c}
    assert ids({"state": ["queued", "dead"]}) == {a, b, dead}
    assert ids({"task": "a"}) == {a, dead}
    assert ids({"task": "a", "state": "queued"}) == {a}
    assert ids({"queue": "nowhere"}) == set()


def test_the_default_limit_is_100(api: Api) -> None:
    api.post("/v1/jobs/batch", {"jobs": [{"task": "t"}] * 101})
    page = api.get("/v1/jobs").json
    assert len(page["jobs"]) == 100 and page["next_cursor"] is not None


def test_a_listing_leaves_args_result_and_checkpoint_out_unless_asked(api: Api) -> None:
    done = succeeded_job(api)
    api.clock.advance(0.001)
    api.submit(args={"seconds": 0})
    plain = api.get("/v1/jobs").json["jobs"]
    assert [j["id"] for j in plain][1] == str(done.id)
    for job in plain:
        assert not {"args", "result", "checkpoint"} & set(job)
        assert job["state"] and job["task"] and "last_error" in job
    args_only = api.get("/v1/jobs", params={"include": "args"}).json["jobs"]
    assert [j["args"] for j in args_only] == [{"seconds": 0}, dict(done.args)]
    assert not {"result", "checkpoint"} & set(args_only[0])
    every = api.get("/v1/jobs", params={"include": ["result", "args", "checkpoint"]}).json
    assert {**every["jobs"][1], "waiting_reason": None} == api.get(f"/v1/jobs/{done.id}").json
    assert every["jobs"][1]["result"] == {"ok": True}


@pytest.mark.parametrize("value", ["args,result", "lease", "", "ARGS"])
def test_include_takes_one_known_field_a_value(api: Api, value: str) -> None:
    assert_problem(api.get("/v1/jobs", params={"include": value}), 400, "include")


def _pages(api: Api, params: dict[str, Any]) -> list[dict[str, Any]]:
    pages = []
    cursor = None
    while True:
        page = api.get("/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200
        pages.append({"size": len(page.content), "jobs": page.json["jobs"]})
        cursor = page.json["next_cursor"]
        if cursor is None:
            return pages


def test_a_listing_ends_a_page_early_rather_than_pass_1_mib(api: Api) -> None:
    """40 jobs of about 300 KB of args: a page of all of them would be 12 MB."""
    pad = "x" * 300_000
    made = []
    for _ in range(40):
        made.append(api.submit(task="work", args={"pad": pad})["id"])
        api.clock.advance(0.001)
    pages = _pages(api, {"include": "args", "limit": "1000"})
    assert [len(p["jobs"]) for p in pages] == [3] * 13 + [1]
    assert all(p["size"] <= 1024 * 1024 for p in pages)
    listed = [j["id"] for p in pages for j in p["jobs"]]
    assert listed == list(reversed(made))
    assert [len(p["jobs"]) for p in _pages(api, {"limit": "1000"})] == [40]


def test_a_job_bigger_than_a_page_comes_alone(api: Api) -> None:
    big = api.submit(task="work", args={"pad": "x" * 1_048_000})["id"]
    api.clock.advance(0.001)
    small = api.submit()["id"]
    pages = _pages(api, {"include": "args"})
    assert [[j["id"] for j in p["jobs"]] for p in pages] == [[small], [big]]


@given(sizes=st.lists(st.integers(min_value=0, max_value=3000), max_size=12))
@settings(max_examples=40, deadline=None)
def test_pages_hold_every_job_once_in_order_within_the_byte_budget(sizes: list[int]) -> None:
    api = make_api()
    made = []
    for size in sizes:
        made.append(api.submit(task="work", args={"pad": "x" * size})["id"])
        api.clock.advance(0.001)
    budget = 4000
    original = jobs_module.PAGE_BYTES_MAX
    jobs_module.PAGE_BYTES_MAX = budget
    try:
        pages = _pages(api, {"include": "args", "limit": "5"})
    finally:
        jobs_module.PAGE_BYTES_MAX = original
    assert [j["id"] for p in pages for j in p["jobs"]] == list(reversed(made))
    for page in pages:
        assert len(page["jobs"]) <= 5
        assert page["size"] <= budget + 100 or len(page["jobs"]) == 1
    assert all(page["jobs"] for page in pages) if made else len(pages) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": ["5", "6"]}, "limit"),
        ({"state": "sleeping"}, "state"),
        ({"queue": "a b"}, "queue"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_query_parameter_or_cursor_is_a_400_naming_it(
    api: Api, params: dict[str, Any], field: str
) -> None:
    assert_problem(api.get("/v1/jobs", params=params), 400, field)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs/{id}"),
        ("GET", "/v1/jobs/{id}/attempts"),
        ("PATCH", "/v1/jobs/{id}"),
        ("DELETE", "/v1/jobs/{id}"),
        ("POST", "/v1/jobs/{id}/cancel"),
        ("POST", "/v1/jobs/{id}/retry"),
        ("POST", "/v1/jobs"),
        ("POST", "/v1/jobs/batch"),
        ("POST", "/v1/jobs/cancel"),
        ("POST", "/v1/jobs/retry"),
        ("POST", "/v1/queues/default/pause"),
        ("POST", "/v1/queues/default/resume"),
    ],
)
def test_a_route_without_query_parameters_refuses_an_unknown_one(
    api: Api, method: str, path: str
) -> None:
    job = api.submit()
    result = api.call(method, path.format(id=job["id"]), body="{}", params={"colour": "red"})
    assert_problem(result, 400, "colour")
    assert api.store.get(_id(job)).state is JobState.QUEUED
    assert not any(queue.paused for queue in api.store.queues())


# --- changing -----------------------------------------------------------------------------


def test_patch_changes_priority_and_run_at_of_a_waiting_job(api: Api) -> None:
    job = api.submit(delay_seconds=600)
    result = api.call(
        "PATCH",
        f"/v1/jobs/{job['id']}",
        json_body={"priority": 7, "run_at": "2026-11-22T12:00:00+01:00"},
    )
    assert result.status_code == 200
    assert result.json["priority"] == 7 and result.json["run_at"] == "2026-11-22T11:00:00.000Z"
    queued = api.submit()
    moved = api.call(
        "PATCH", f"/v1/jobs/{queued['id']}", json_body={"run_at": "2026-11-23T00:00:00Z"}
    ).json
    assert moved["state"] == "scheduled"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"queue": "other"}, ["queue"]),
        ({"priority": 5, "max_attempts": 9}, ["max_attempts"]),
        ({"priority": 500}, ["priority"]),
        ({"priority": None}, ["priority"]),
        ({"run_at": "tomorrow"}, ["run_at"]),
        ({"delay_seconds": 5}, ["delay_seconds"]),
        ({}, [""]),
    ],
)
def test_patch_refuses_any_other_field_or_bad_value(
    api: Api, body: dict[str, Any], fields: list[str]
) -> None:
    job = api.submit(delay_seconds=600)
    assert_problem(api.call("PATCH", f"/v1/jobs/{job['id']}", json_body=body), 422, *fields)
    assert api.store.get(_id(job)).priority == 0


def test_patch_of_a_running_or_finished_job_is_a_409(api: Api) -> None:
    running = f.enqueue(api.store)
    f.claim_one(api.store)
    finished = succeeded_job(api)
    for job in (running, finished):
        result = api.call("PATCH", f"/v1/jobs/{job.id}", json_body={"priority": 1})
        assert_problem(result, 409)
    assert api.store.get(running.id).priority == 0


def _id(job: dict[str, Any]) -> Any:
    from uuid import UUID

    return UUID(job["id"])


# --- cancel and retry ---------------------------------------------------------------------


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/cancel"), ("DELETE", "")])
def test_cancel_ends_a_waiting_job_and_again_is_harmless(
    api: Api, method: str, suffix: str
) -> None:
    job = api.submit(delay_seconds=60)
    first = api.call(method, f"/v1/jobs/{job['id']}{suffix}")
    assert first.status_code == 200 and first.json["state"] == "cancelled"
    again = api.call(method, f"/v1/jobs/{job['id']}{suffix}")
    assert again.status_code == 200 and again.json == first.json


def test_cancel_of_a_running_job_sets_cancel_requested(api: Api) -> None:
    job = f.enqueue(api.store)
    f.claim_one(api.store)
    result = api.post(f"/v1/jobs/{job.id}/cancel")
    assert result.json["state"] == "running" and result.json["cancel_requested"] is True


def test_cancel_of_a_succeeded_or_dead_job_is_a_409(api: Api) -> None:
    for job in (succeeded_job(api), dead_job(api)):
        assert_problem(api.post(f"/v1/jobs/{job.id}/cancel"), 409)
        assert_problem(api.call("DELETE", f"/v1/jobs/{job.id}"), 409)
        assert api.store.get(job.id).state is job.state


def test_retry_runs_a_dead_job_again_with_history_kept(api: Api) -> None:
    job = dead_job(api)
    result = api.post(f"/v1/jobs/{job.id}/retry")
    assert result.status_code == 200
    assert result.json["state"] == "queued" and result.json["attempt"] == 1
    assert len(api.get(f"/v1/jobs/{job.id}/attempts").json["attempts"]) == 1
    again = f.claim_one(api.store)
    assert again.id == job.id and again.attempt == 2


def test_retry_of_a_job_that_is_not_dead_or_cancelled_is_a_409(api: Api) -> None:
    job = api.submit()
    assert_problem(api.post(f"/v1/jobs/{job['id']}/retry"), 409)
    assert api.store.get(_id(job)).state is JobState.QUEUED


def test_bulk_retry_and_cancel_touch_only_what_they_may(api: Api) -> None:
    dead = [dead_job(api, queue="mail") for _ in range(2)]
    dead_elsewhere = dead_job(api, queue="sms")
    waiting = api.submit(queue="mail", delay_seconds=60)
    done = succeeded_job(api)

    result = api.post("/v1/jobs/retry", {"queue": "mail"})
    assert result.status_code == 200 and result.json == {"count": 2}
    assert {api.store.get(j.id).state for j in dead} == {JobState.QUEUED}
    assert api.store.get(dead_elsewhere.id).state is JobState.DEAD

    result = api.post(
        "/v1/jobs/cancel", {"queue": ["mail", "sms"], "state": ["queued", "scheduled"]}
    )
    assert result.json == {"count": 3}
    assert api.store.get(_id(waiting)).state is JobState.CANCELLED
    assert api.store.get(dead_elsewhere.id).state is JobState.DEAD
    assert api.store.get(done.id).state is JobState.SUCCEEDED
    assert api.post("/v1/jobs/cancel", {"task": "nothing-like-it"}).json == {"count": 0}


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/v1/jobs/retry", {}, [""]),
        ("/v1/jobs/retry", {"state": "queued"}, ["state"]),
        ("/v1/jobs/cancel", {"state": "succeeded"}, ["state"]),
        ("/v1/jobs/cancel", {"state": "asleep"}, ["state"]),
        ("/v1/jobs/cancel", {"queue": []}, ["queue"]),
        ("/v1/jobs/cancel", {"queue": 5}, ["queue"]),
        ("/v1/jobs/cancel", {"queues": "a"}, ["queues"]),
        ("/v1/jobs/cancel", {"state": None, "queue": "default"}, ["state"]),
    ],
)
def test_a_bulk_filter_is_validated(
    api: Api, path: str, body: dict[str, Any], fields: list[str]
) -> None:
    job = api.submit()
    assert_problem(api.post(path, body), 422, *fields)
    assert api.store.get(_id(job)).state is JobState.QUEUED


def test_a_bulk_body_must_be_a_json_object(api: Api) -> None:
    assert_problem(api.call("POST", "/v1/jobs/cancel", body="[]"), 400)
    assert_problem(api.call("POST", "/v1/jobs/cancel", body="{", content_type="text/plain"), 415)
