"""POST /v1/jobs and /v1/jobs/batch: creation, idempotency, refusals (nothing stored)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.model import JobState
from tests import factories as f
from tests.api.conftest import Api, assert_problem, make_api

TIME_MS_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def assert_nothing_stored(api: Api) -> None:
    assert api.stored() == []
    assert api.store.state.idempotency == {}


# --- one job ------------------------------------------------------------------------------


def test_a_submission_is_stored_and_returned_with_every_default(api: Api) -> None:
    result = api.post("/v1/jobs", {"task": "sleep", "args": {"seconds": 0.1}})
    assert result.status_code == 201
    job = result.json
    assert result.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued" and job["attempt"] == 0
    assert job["queue"] == "default" and job["priority"] == 0 and job["max_attempts"] == 3
    assert job["backoff"] == {
        "base_seconds": 1.0,
        "factor": 2.0,
        "max_seconds": 300.0,
        "jitter": "full",
    }
    assert job["run_at"] == job["created_at"] == "2026-11-22T10:00:00.000Z"
    [stored] = api.stored()
    assert str(stored.id) == job["id"] and stored.args == {"seconds": 0.1}


def test_input_times_take_any_offset_and_come_back_in_utc_with_milliseconds(api: Api) -> None:
    job = api.submit(run_at="2026-11-22T13:30:00.123456+02:00")
    assert job["run_at"] == "2026-11-22T11:30:00.123Z"
    assert job["state"] == "scheduled"


def test_delay_seconds_is_counted_from_the_store_clock(api: Api) -> None:
    job = api.submit(delay_seconds=90)
    assert job["run_at"] == "2026-11-22T10:01:30.000Z"
    assert "delay_seconds" not in job


def test_the_request_id_is_echoed_and_stored_as_correlation_id(api: Api) -> None:
    result = api.post("/v1/jobs", {"task": "sleep"}, headers={"X-Request-ID": "order-42.a_b"})
    assert result.headers["x-request-id"] == "order-42.a_b"
    assert result.json["correlation_id"] == "order-42.a_b"
    assert api.stored()[0].correlation_id == "order-42.a_b"


@pytest.mark.parametrize("given", [None, "has space", "x" * 129, "", "ünïcode"])
def test_a_missing_or_invalid_request_id_is_replaced_by_a_new_one(
    api: Api, given: str | None
) -> None:
    headers = {"X-Request-ID": given} if given is not None else {}
    first = api.post("/v1/jobs", {"task": "sleep"}, headers=headers)
    second = api.post("/v1/jobs", {"task": "sleep"}, headers=headers)
    made = first.headers["x-request-id"]
    assert made != given and len(made) == 32
    assert made != second.headers["x-request-id"]
    assert first.json["correlation_id"] == made


def test_a_charset_parameter_is_allowed(api: Api) -> None:
    result = api.post("/v1/jobs", {"task": "sleep"}, content_type="application/json; charset=UTF-8")
    assert result.status_code == 201


def test_depending_on_a_dead_job_is_accepted_and_cancelled_at_once(api: Api) -> None:
    dead = f.enqueue(api.store, max_attempts=1)
    claimed = f.claim_one(api.store)
    api.store.report([f.fail(claimed, retryable=False)])
    assert api.store.get(dead.id).state is JobState.DEAD
    job = api.submit(depends_on=[str(dead.id)])
    assert job["state"] == "cancelled"
    assert job["last_error"]["type"] == "dependency_failed"
    assert str(dead.id) in job["last_error"]["message"]


def test_a_job_waits_for_its_dependencies(api: Api) -> None:
    first = api.submit()
    second = api.submit(depends_on=[first["id"]])
    assert second["state"] == "scheduled" and second["depends_on"] == [first["id"]]


def test_http_and_shell_are_checked_against_the_operator_policy(api: Api) -> None:
    allowed = api.post("/v1/jobs", {"task": "http", "args": {"url": "http://127.0.0.1:9000/x"}})
    assert allowed.status_code == 201
    refused = api.post("/v1/jobs", {"task": "http", "args": {"url": "http://example.com/"}})
    assert_problem(refused, 422, "args.url")
    shell = api.post("/v1/jobs", {"task": "shell", "args": {"argv": ["true"]}})
    assert_problem(shell, 422, "task")
    for url in ("http://127.0.0.1:99999/", "http://127.0.0.1:abc/", "http://[::1:9000/"):
        assert_problem(
            api.post("/v1/jobs", {"task": "http", "args": {"url": url}}), 422, "args.url"
        )
    for timeout in (0, 1e12):
        http = {"url": "http://127.0.0.1:9000/x", "timeout_seconds": timeout}
        assert_problem(
            api.post("/v1/jobs", {"task": "http", "args": http}), 422, "args.timeout_seconds"
        )
    assert len(api.stored()) == 1

    enabled = make_api(builtins=BuiltinPolicy(shell_enabled=True))
    assert (
        enabled.post("/v1/jobs", {"task": "shell", "args": {"argv": ["true"]}}).status_code == 201
    )


# --- idempotency --------------------------------------------------------------------------

BODY: dict[str, Any] = {
    "task": "billing.send_invoice",
    "args": {"invoice": 42, "lines": [{"sku": "a", "n": 1}]},
    "queue": "billing",
    "priority": 5,
    "idempotency_key": "invoice-42",
}


def test_the_same_key_and_body_returns_the_existing_job_with_200(api: Api) -> None:
    created = api.post("/v1/jobs", BODY)
    api.clock.advance(5)
    again = api.post("/v1/jobs", BODY, headers={"X-Request-ID": "the-retry"})
    assert created.status_code == 201 and again.status_code == 200
    assert again.json == created.json
    assert again.headers["location"] == created.headers["location"]
    assert len(api.stored()) == 1


def test_key_order_and_explicit_defaults_do_not_make_another_body(api: Api) -> None:
    api.post("/v1/jobs", BODY)
    reordered = (
        '{"idempotency_key": "invoice-42", "priority": 5, "max_attempts": 3, '
        '"args": {"lines": [{"n": 1, "sku": "a"}], "invoice": 42}, '
        '"backoff": {"jitter": "full"}, "depends_on": [], '
        '"queue": "billing", "task": "billing.send_invoice"}'
    )
    assert api.call("POST", "/v1/jobs", body=reordered).status_code == 200
    assert len(api.stored()) == 1


def test_the_order_of_depends_on_does_not_matter(api: Api) -> None:
    a, b = api.submit()["id"], api.submit()["id"]
    first = api.post("/v1/jobs", {**BODY, "depends_on": [a, b]})
    second = api.post("/v1/jobs", {**BODY, "depends_on": [b, a]})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json["id"] == second.json["id"]


def test_delay_seconds_is_compared_as_sent_not_as_the_run_at_it_made(api: Api) -> None:
    first = api.post("/v1/jobs", {**BODY, "delay_seconds": 60})
    api.clock.advance(30)
    same = api.post("/v1/jobs", {**BODY, "delay_seconds": 60})
    assert same.status_code == 200 and same.json["run_at"] == first.json["run_at"]
    other = api.post("/v1/jobs", {**BODY, "delay_seconds": 30})
    assert_problem(other, 409)
    assert len(api.stored()) == 1


def test_the_idempotency_key_header_works_like_the_field(api: Api) -> None:
    body = {k: v for k, v in BODY.items() if k != "idempotency_key"}
    by_header = api.post("/v1/jobs", body, headers={"Idempotency-Key": "invoice-42"})
    assert by_header.status_code == 201
    assert by_header.json["idempotency_key"] == "invoice-42"
    by_field = api.post("/v1/jobs", BODY)
    both = api.post("/v1/jobs", BODY, headers={"Idempotency-Key": "invoice-42"})
    assert (by_field.status_code, both.status_code) == (200, 200)
    assert len(api.stored()) == 1


def test_a_header_and_a_field_that_differ_are_refused(api: Api) -> None:
    result = api.post("/v1/jobs", BODY, headers={"Idempotency-Key": "invoice-43"})
    assert_problem(result, 422, "idempotency_key")
    assert_nothing_stored(api)


def test_the_same_key_with_another_body_is_a_conflict_and_stores_nothing(api: Api) -> None:
    original = api.post("/v1/jobs", BODY).json
    result = api.post("/v1/jobs", {**BODY, "priority": 6})
    doc = assert_problem(result, 409)
    assert doc["type"] == "urn:taskyard:problem:idempotency-conflict"
    assert original["id"] in doc["detail"] and "invoice-42" in doc["detail"]
    assert [str(j.id) for j in api.stored()] == [original["id"]]


# --- refusals: the documented status, a problem document, nothing stored -----------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"task": "sleep"', 400),
        ("{'task': 'sleep'}", 400),
        ('{"task": "sleep", "task": "other"}', 400),
        ('{"task": "sleep", "args": {"seconds": NaN}}', 400),
        ("", 400),
        ("[]", 400),
        ('"sleep"', 400),
        ("null", 400),
        ("[" * 100_000, 400),
        ('{"task": "x", "args": {"v": 1e400}}', 400),
        ('{"task": "x", "args": {"s": "\\ud800"}}', 400),
        ('{"task": "x", "args": {"\\udc00": 1}}', 400),
        ('{"task": "x", "idempotency_key": "k\\udbff"}', 400),
    ],
    ids=[
        "truncated",
        "single-quotes",
        "duplicate-key",
        "nan",
        "empty",
        "array",
        "string",
        "null",
        "deep",
        "overflowing-number",
        "lone-high-surrogate",
        "lone-low-surrogate-in-a-key",
        "lone-surrogate-in-the-key",
    ],
)
def test_a_body_that_cannot_be_read_is_a_400(api: Api, body: str, status: int) -> None:
    assert_problem(api.call("POST", "/v1/jobs", body=body), status)
    assert_nothing_stored(api)


def test_a_surrogate_pair_is_one_character_and_is_kept(api: Api) -> None:
    result = api.call("POST", "/v1/jobs", body='{"task": "x", "args": {"s": "\\ud83d\\ude00"}}')
    assert result.status_code == 201 and result.json["args"] == {"s": "\U0001f600"}
    assert api.get("/v1/jobs").status_code == 200


def test_a_body_that_is_not_utf8_is_a_400(api: Api) -> None:
    assert_problem(api.call("POST", "/v1/jobs", body='{"task": "s\xe9"}'.encode("latin-1")), 400)
    assert_nothing_stored(api)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_a_content_type_other_than_json_is_a_415(api: Api, content_type: str | None) -> None:
    result = api.call("POST", "/v1/jobs", body='{"task": "sleep"}', content_type=content_type)
    assert_problem(result, 415)
    assert_nothing_stored(api)


def test_a_body_over_one_mib_is_a_413(api: Api) -> None:
    big = {"task": "sleep", "args": {"pad": "x" * (1024 * 1024)}}
    assert_problem(api.post("/v1/jobs", big), 413)
    assert_nothing_stored(api)


def test_a_body_just_under_one_mib_is_read(api: Api) -> None:
    body = {"task": "work", "args": {"pad": ""}}
    body["args"]["pad"] = "x" * (1024 * 1024 - len(json.dumps(body)))
    assert len(json.dumps(body)) == 1024 * 1024
    assert api.post("/v1/jobs", body).status_code == 201


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"task": "sleep", "colour": "red"}, ["colour"]),
        ({"task": "sleep", "backoff": {"jitter": "some"}}, ["backoff.jitter"]),
        ({"task": "sleep", "backoff": {"base": 1}}, ["backoff.base"]),
        ({"task": "sleep", "priority": "high"}, ["priority"]),
        ({"task": "sleep", "priority": 101}, ["priority"]),
        ({"task": "sleep", "max_attempts": True}, ["max_attempts"]),
        ({"task": "sleep", "max_attempts": 0}, ["max_attempts"]),
        ({"task": "sleep", "args": []}, ["args"]),
        ({"task": "sleep", "queue": "no spaces"}, ["queue"]),
        ({"task": "sleep", "run_at": "2026-11-22T10:00:00"}, ["run_at"]),
        (
            {"task": "sleep", "run_at": "2026-11-22T10:00:00Z", "delay_seconds": 5},
            ["delay_seconds"],
        ),
        ({"task": "sleep", "delay_seconds": -1}, ["delay_seconds"]),
        ({"task": "sleep", "timeout_seconds": 0}, ["timeout_seconds"]),
        ({"task": "sleep", "timeout_seconds": 1e12}, ["timeout_seconds"]),
        ({"task": "sleep", "backoff": {"base_seconds": 1e12}}, ["backoff.base_seconds"]),
        (
            {"task": "sleep", "backoff": {"base_seconds": 1, "max_seconds": 1e12}},
            ["backoff.max_seconds"],
        ),
        ({"task": "sleep", "run_at": "0001-01-01T00:00:00+01:00"}, ["run_at"]),
        ({"task": "sleep", "run_at": "9999-12-31T23:59:59-01:00"}, ["run_at"]),
        ({"task": "sleep", "priority": 500, "args": {"seconds": -1}}, ["priority", "args.seconds"]),
        ({"task": "sleep", "depends_on": ["not-an-id"]}, ["depends_on[0]"]),
        ({"task": "sleep", "args": {"seconds": 4000}}, ["args.seconds"]),
        ({"task": ""}, ["task"]),
        ({}, ["task"]),
        ({"task": 7, "priority": 1.5}, ["task", "priority"]),
    ],
)
def test_well_formed_json_that_fails_validation_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], fields: list[str]
) -> None:
    assert_problem(api.post("/v1/jobs", body), 422, *fields)
    assert_nothing_stored(api)


def test_an_unknown_dependency_is_a_422_naming_its_place(api: Api) -> None:
    known = api.submit()["id"]
    unknown = "0190f3c4-1a2b-7c3d-8e4f-0123456789ab"
    result = api.post("/v1/jobs", {"task": "sleep", "depends_on": [known, unknown]})
    doc = assert_problem(result, 422, "depends_on[1]")
    assert unknown in doc["errors"][0]["message"]
    assert [str(j.id) for j in api.stored()] == [known]
    # the same problem as any field's: its type and title, the field named in its detail
    other = assert_problem(api.post("/v1/jobs", {"task": "sleep", "priority": 500}), 422)
    assert (doc["type"], doc["title"]) == (other["type"], other["title"])
    assert doc["detail"] == f"depends_on[1]: no job {unknown}"


def test_a_422_details_the_first_three_fields_and_counts_the_rest(api: Api) -> None:
    body = {"task": 7, "priority": 1.5, "max_attempts": "x", "queue": "", "run_at": 1}
    doc = assert_problem(api.post("/v1/jobs", body), 422)
    assert len(doc["errors"]) == 5
    shown = [f"{e['field']}: {e['message']}" for e in doc["errors"][:3]]
    assert doc["detail"] == "; ".join(shown) + " (and 2 more)"


# --- batches ------------------------------------------------------------------------------


def test_a_batch_is_stored_in_order(api: Api) -> None:
    result = api.post(
        "/v1/jobs/batch",
        {"jobs": [{"task": "a"}, {"task": "b", "priority": 3}, {"task": "c"}]},
        headers={"X-Request-ID": "batch-1"},
    )
    assert result.status_code == 201
    jobs = result.json["jobs"]
    assert [j["task"] for j in jobs] == ["a", "b", "c"]
    assert {j["correlation_id"] for j in jobs} == {"batch-1"}
    assert len(api.stored()) == 3


def test_a_batch_with_one_bad_job_stores_nothing_and_names_it(api: Api) -> None:
    result = api.post(
        "/v1/jobs/batch",
        {"jobs": [{"task": "a"}, {"task": "b", "priority": 300}, {"task": "c", "x": 1}]},
    )
    assert_problem(result, 422, "jobs[1].priority", "jobs[2].x")
    assert_nothing_stored(api)


def test_a_batch_with_an_unknown_dependency_stores_nothing(api: Api) -> None:
    unknown = "0190f3c4-1a2b-7c3d-8e4f-0123456789ab"
    result = api.post(
        "/v1/jobs/batch",
        {"jobs": [{"task": "a"}, {"task": "b"}, {"task": "c", "depends_on": [unknown]}]},
    )
    assert_problem(result, 422, "jobs[2].depends_on[0]")
    assert_nothing_stored(api)


def test_the_same_key_twice_in_a_batch_with_other_bodies_names_no_unstored_job(
    api: Api,
) -> None:
    result = api.post("/v1/jobs/batch", {"jobs": [BODY, {**BODY, "priority": 1}]})
    doc = assert_problem(result, 409)
    assert "twice in this batch" in doc["detail"] and "job " not in doc["detail"]
    assert_nothing_stored(api)


def test_a_batch_conflicting_with_a_stored_key_stores_nothing_new(api: Api) -> None:
    api.post("/v1/jobs", BODY)
    result = api.post("/v1/jobs/batch", {"jobs": [{"task": "a"}, {**BODY, "priority": 1}]})
    assert_problem(result, 409)
    assert len(api.stored()) == 1


def test_idempotency_works_inside_a_batch(api: Api) -> None:
    api.post("/v1/jobs", BODY)
    result = api.post("/v1/jobs/batch", {"jobs": [BODY, {"task": "a"}, BODY]})
    assert result.status_code == 201
    ids = [j["id"] for j in result.json["jobs"]]
    assert ids[0] == ids[2] and ids[0] != ids[1]
    assert len(api.stored()) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jobs": []}, "jobs"),
        ({"jobs": [{"task": "a"}] * 1001}, "jobs"),
        ({}, "jobs"),
        ({"jobs": {"task": "a"}}, "jobs"),
        ({"jobs": [{"task": "a"}], "extra": 1}, "extra"),
        ({"jobs": [{"task": "a"}, "b"]}, "jobs[1]"),
    ],
    ids=["empty", "too-many", "missing", "not-a-list", "unknown-field", "not-an-object"],
)
def test_a_malformed_batch_is_a_422(api: Api, body: dict[str, Any], field: str) -> None:
    assert_problem(api.post("/v1/jobs/batch", body), 422, field)
    assert_nothing_stored(api)


def test_a_batch_refuses_the_idempotency_key_header(api: Api) -> None:
    result = api.post("/v1/jobs/batch", {"jobs": [{"task": "a"}]}, headers={"Idempotency-Key": "k"})
    assert_problem(result, 422, "Idempotency-Key")
    assert_nothing_stored(api)


def test_a_batch_may_be_up_to_16_mib(api: Api) -> None:
    pad = "x" * 2048
    ok = {"jobs": [{"task": "a", "args": {"pad": pad}} for _ in range(1000)]}
    assert 1024 * 1024 < len(json.dumps(ok)) < 16 * 1024 * 1024
    assert api.post("/v1/jobs/batch", ok).status_code == 201
    too_big = {"jobs": [{"task": "a", "args": {"pad": "x" * (17 * 1024)}}] * 1000}
    assert_problem(api.post("/v1/jobs/batch", too_big), 413)
    assert len(api.stored()) == 1000
