"""The declaration (`taskyard.domain.contract`) against everything derived from or held to
it: hostile bodies and parameters drawn from it never get a 5xx and a refusal stores
nothing; what is accepted comes back as sent; the validator and the OpenAPI schemas agree;
every answer carries exactly its declared fields, each of its declared kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from taskyard.domain import contract
from taskyard.domain.errors import FieldError, ValidationError
from taskyard.domain.flow import QueueLimits, QueueUsage, RateLimit
from taskyard.domain.model import ErrorInfo, Job, JobState, Lease, QueueInfo
from taskyard.domain.ports import SchedulerInfo, WorkerInfo
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.schema import ABSENT, Shape
from taskyard.domain.storable import INT_DIGITS_MAX, NUL_MESSAGE, SURROGATE_MESSAGE
from taskyard.domain.submission import parse_submission
from taskyard.domain.timefmt import format_time, parse_time
from taskyard.entrypoints.api import system
from taskyard.entrypoints.api.app import api_document
from tests import factories as f
from tests.api.conftest import START, Api, make_api
from tests.strategies import args_values, bodies, edge_text, hostile_text, junk, values_for

DOCUMENT = api_document()
HOSTILE = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def conforms(value: Any, shape: Shape) -> None:
    """`value` is valid against the OpenAPI schema rendered for `shape`."""
    schema = {"$ref": f"#/components/schemas/{shape.name}", "components": DOCUMENT["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


def sent(api: Api, method: str, path: str, body: Any, **kwargs: Any) -> Any:
    """Send `body` as JSON (a value JSON cannot hold is a 400); never a 5xx, and a refused
    request stores nothing."""
    before = api.stored()
    result = api.call(method, path, body=json.dumps(body), **kwargs)
    assert result.status_code < 500, result.text
    if result.status_code >= 400:
        assert api.stored() == before, result.text
    return result


def shown_as_sent(job: dict[str, Any], body: dict[str, Any]) -> None:
    """An accepted submission comes back as sent, with the declared defaults filled in."""
    for declared in contract.SUBMISSION.fields:
        name = declared.name
        if name in ("run_at", "delay_seconds", "backoff", "depends_on"):
            continue
        given_value = body.get(name)
        expected = given_value if given_value is not None else declared.default
        assert job[name] == (None if expected is ABSENT else expected), name
    backoff = {f.name: f.default for f in contract.BACKOFF_INPUT.fields}
    assert job["backoff"] == backoff | (body.get("backoff") or {})
    if body.get("run_at") is not None:
        assert job["run_at"] == format_time(parse_time(body["run_at"]))
    else:
        delay = timedelta(seconds=body.get("delay_seconds") or 0)
        assert job["run_at"] == format_time(START + delay)


submissions = st.one_of(bodies(contract.SUBMISSION), bodies(contract.SUBMISSION), junk)


@HOSTILE
@given(body=submissions, header=st.one_of(st.none(), edge_text))
@example(body={"task": "t", "backoff": {"factor": 10**400}}, header=None)  # 500 on main
@example(body={"task": "t", "timeout_seconds": 10**400}, header=None)  # 500 on main
@example(body={"task": "t", "backoff": {"jitter": ["full"]}}, header=None)  # 500 on main
def test_a_submission_is_refused_with_a_4xx_or_stored_as_sent(body: Any, header: Any) -> None:
    api = make_api()
    headers = {"Idempotency-Key": header} if header and header.isprintable() else {}
    result = sent(api, "POST", "/v1/jobs", body, headers=headers)
    if result.status_code == 201:
        keyed = (
            {"idempotency_key": header} if headers and body.get("idempotency_key") is None else {}
        )
        shown_as_sent(result.json, body | keyed)
        job = {k: v for k, v in result.json.items() if k != "warnings"}  # the answer's own
        shown = api.get(f"/v1/jobs/{result.json['id']}").json
        assert shown.pop("waiting_reason") in contract.WAITING_REASONS  # a new job waits
        assert shown == job
    batch = sent(api, "POST", "/v1/jobs/batch", {"jobs": [body, body]})
    if not headers:
        assert (batch.status_code == 201) == (result.status_code == 201), batch.text


@HOSTILE
@given(body=st.one_of(bodies(contract.BATCH), junk))
def test_a_batch_is_refused_with_a_4xx_or_stored_whole(body: Any) -> None:
    api = make_api()
    result = sent(api, "POST", "/v1/jobs/batch", body)
    if result.status_code == 201:
        assert len(api.stored()) == len(body["jobs"])


@HOSTILE
@given(change=st.one_of(bodies(contract.CHANGE), junk), job_filter=bodies(contract.FILTER))
def test_a_change_or_a_bulk_filter_is_refused_with_a_4xx_or_applied(
    change: Any, job_filter: Any
) -> None:
    api = make_api()
    job = api.submit(delay_seconds=60)
    result = sent(api, "PATCH", f"/v1/jobs/{job['id']}", change)
    if result.status_code == 200:
        for name in ("priority", "run_at"):
            if name in change:
                assert result.json[name] == (
                    change[name] if name == "priority" else format_time(parse_time(change[name]))
                )
    for action in ("retry", "cancel"):
        sent(api, "POST", f"/v1/jobs/{action}", job_filter, params={"dry_run": "true"})
        sent(api, "POST", f"/v1/jobs/{action}", job_filter)


params = st.fixed_dictionaries(
    {},
    optional={
        p.name: st.one_of(
            values_for(p.kind).map(str), st.lists(values_for(p.kind).map(str), max_size=3)
        )
        for p in contract.LISTING_PARAMS
    },
)


@HOSTILE
@given(listing=params, window=values_for(contract.WINDOW.kind).map(str))
def test_query_parameters_drawn_from_the_declaration_are_a_200_or_a_400(
    listing: dict[str, Any], window: str
) -> None:
    api = make_api()
    api.submit()
    for path, query in (("/v1/jobs", listing), ("/v1/stats", {"window": window})):
        result = api.get(path, params=query)
        assert result.status_code in (200, 400), result.text


# --- the validator and the OpenAPI schema agree ------------------------------------------------

UNSAID = (
    NUL_MESSAGE,
    SURROGATE_MESSAGE,
    f"must be an integer of at most {INT_DIGITS_MAX} digits",
    "give run_at or delay_seconds, not both",
    "must be " + contract.BACKOFF_INPUT["max_seconds"].kind.says(),
)


def unsaid(body: dict[str, Any], error: FieldError) -> bool:
    """Whether the JSON schema cannot say this problem: text a store cannot hold, the
    rules across fields, what RFC 3339 allows (`format` is not asserted), and a float
    with nothing after the point where an integer belongs (JSON Schema takes 1.0 for 1)."""
    sent_value = body.get(error.field)
    return (
        error.message.endswith(UNSAID)
        or error.field == "run_at"
        or (isinstance(sent_value, float) and sent_value.is_integer())
    )


@settings(max_examples=400, deadline=None)
@given(body=bodies(contract.SUBMISSION))
def test_the_validator_accepts_only_what_the_schema_allows_and_refuses_only_what_it_cannot_say(
    body: dict[str, Any],
) -> None:
    schema_valid = True
    try:
        conforms(body, contract.SUBMISSION)
    except jsonschema.ValidationError:
        schema_valid = False
    try:
        parse_submission(body)
    except ValidationError as refused:
        if schema_valid:
            said = [e for e in refused.errors if not unsaid(body, e)]
            assert not said, said
    else:
        assert schema_valid, body


# --- every answer carries exactly its declared fields, of their declared kinds -------------------

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
texts = st.one_of(hostile_text.filter(str.isprintable), st.sampled_from(["", "w-1"]))
jobs = st.builds(
    Job,
    id=st.uuids(),
    task=st.sampled_from(["sleep", "t"]),
    args=st.dictionaries(st.text(max_size=3), args_values, max_size=3),
    queue=st.from_regex(contract.QUEUE_NAME.pattern or "", fullmatch=True),
    priority=st.integers(-100, 100),
    run_at=moments,
    max_attempts=st.integers(1, 1000),
    backoff=st.builds(RetryPolicy, jitter=st.sampled_from(list(Jitter))),
    timeout_s=st.none() | st.floats(0.001, 1e6),
    idempotency_key=st.none() | st.text(min_size=1, max_size=5),
    depends_on=st.lists(st.uuids(), max_size=2).map(tuple),
    state=st.sampled_from(list(JobState)),
    attempt=st.integers(0, 10),
    attempt_limit=st.integers(1, 20),
    created_at=moments,
    updated_at=moments,
    finished_at=st.none() | moments,
    lease=st.none() | st.builds(Lease, worker=texts, expires_at=moments),
    cancel_requested=st.booleans(),
    checkpoint=args_values,
    result=args_values,
    last_error=st.none() | st.builds(ErrorInfo, type=texts, message=texts),
    correlation_id=st.none() | st.text(min_size=1, max_size=5),
)


@settings(max_examples=150, deadline=None)
@given(job=jobs)
def test_a_job_answer_has_every_declared_field_of_its_declared_kind(job: Job) -> None:
    answer = job.to_json()
    assert list(answer) == [f.name for f in contract.JOB.fields]
    conforms(answer, contract.JOB)


@settings(max_examples=50, deadline=None)
@given(
    queue=st.builds(
        QueueInfo,
        name=st.sampled_from(["default", "a.b-c_d"]),
        paused=st.booleans(),
        counts=st.dictionaries(st.sampled_from(list(JobState)), st.integers(0, 10**9)),
        oldest_queued_age_s=st.none() | st.floats(0, 1e9),
        limits=st.builds(
            QueueLimits,
            concurrency_limit=st.none() | st.integers(1, 10**6),
            key_concurrency_limit=st.none() | st.integers(1, 10**6),
            rate_limit=st.none()
            | st.builds(RateLimit, count=st.integers(1, 10**6), period_s=st.floats(0.001, 86_400)),
            key_rate_limit=st.none()
            | st.builds(RateLimit, count=st.integers(1, 10**6), period_s=st.integers(1, 86_400)),
            weight=st.integers(1, 1000),
        ),
        usage=st.builds(
            QueueUsage,
            running=st.integers(0, 10**6),
            started_in_window=st.none() | st.integers(0, 10**6),
        ),
    ),
    worker=st.builds(
        WorkerInfo,
        id=texts,
        host=texts,
        pid=st.integers(1, 2**22),
        queues=st.lists(st.sampled_from(["a", "b"]), max_size=2).map(tuple),
        concurrency=st.integers(1, 1024),
        started_at=moments,
        last_heartbeat_at=moments,
        running_job_ids=st.lists(st.uuids(), max_size=2).map(tuple),
    ),
    scheduler=st.builds(
        SchedulerInfo,
        id=texts,
        host=texts,
        pid=st.integers(1, 2**22),
        last_heartbeat_at=moments,
        leader=st.booleans(),
        term=st.none() | st.integers(1, 10**6),
    ),
)
def test_queue_worker_and_scheduler_answers_have_their_declared_fields(
    queue: QueueInfo, worker: WorkerInfo, scheduler: SchedulerInfo
) -> None:
    for answer, shape in (
        (system.queue_json(queue), contract.QUEUE),
        (system.worker_json(worker), contract.WORKER),
        (system.scheduler_json(scheduler), contract.SCHEDULER),
    ):
        assert list(answer) == [f.name for f in shape.fields], shape.name
        conforms(answer, shape)


def test_attempt_answers_have_their_declared_fields(api: Api) -> None:
    failed, succeeded = api.submit(task="t"), api.submit(task="t")
    api.store.report([f.fail(f.claim_one(api.store), retryable=False)])
    api.store.report([f.succeed(f.claim_one(api.store), result={"ok": [1]})])
    attempts = [
        *api.get(f"/v1/jobs/{failed['id']}/attempts").json["attempts"],
        *api.get(f"/v1/jobs/{succeeded['id']}/attempts").json["attempts"],
    ]
    assert sorted(a["outcome"] for a in attempts) == ["failed", "succeeded"]
    for attempt in attempts:
        assert list(attempt) == [f.name for f in contract.ATTEMPT.fields]
        conforms(attempt, contract.ATTEMPT)
