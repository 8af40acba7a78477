"""The OpenAPI 3.1 document of the API, served at `/openapi.json`.

Written by hand next to the code it describes, and held to it by tests: one walks the
Falcon router and fails when a route or method is missing here (or here but not routed);
another checks every response the API tests receive against the schema documented for
its route, method and status.
"""

from __future__ import annotations

from typing import Any

from taskyard import __version__
from taskyard.domain.management import BULK_COUNT_SCAN_MAX, FILTER_VALUES_MAX
from taskyard.domain.model import JobState, Outcome
from taskyard.domain.retry import BASE_S_DEFAULT, FACTOR_DEFAULT, MAX_S_DEFAULT, Jitter
from taskyard.domain.submission import (
    BATCH_MAX,
    DELAY_S_MAX,
    DEPENDS_ON_MAX,
    DURATION_S_MIN,
    IDEMPOTENCY_KEY_LEN_MAX,
    MAX_ATTEMPTS_DEFAULT,
    MAX_ATTEMPTS_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    QUEUE_LEN_MAX,
    SECONDS_MAX,
    TASK_LEN_MAX,
)
from taskyard.entrypoints.api import query
from taskyard.entrypoints.api.jobs import LISTED_ON_REQUEST, PAGE_BYTES_MAX

TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
QUEUE_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _obj(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    """An object with exactly these properties (all of them required unless told)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


TIME_OUT = {"type": "string", "format": "date-time", "pattern": TIME_PATTERN}
TIME_IN = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339 with an offset (a time without one is refused)",
}
JOB_ID = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
QUEUE = {"type": "string", "pattern": QUEUE_PATTERN}
STATES = [state.value for state in JobState]


def _schemas() -> dict[str, Any]:
    backoff_out = _obj(
        {
            "base_seconds": {"type": "number", "exclusiveMinimum": 0},
            "factor": {"type": "number", "minimum": 1},
            "max_seconds": {"type": "number"},
            "jitter": {"enum": [j.value for j in Jitter]},
        }
    )
    backoff_in = _obj(
        {
            "base_seconds": {
                "type": "number",
                "minimum": DURATION_S_MIN,
                "maximum": SECONDS_MAX,
                "default": BASE_S_DEFAULT,
            },
            "factor": {"type": "number", "minimum": 1, "default": FACTOR_DEFAULT},
            "max_seconds": {
                "type": "number",
                "maximum": SECONDS_MAX,
                "default": MAX_S_DEFAULT,
                "minimum": DURATION_S_MIN,
                "description": "at least base_seconds",
            },
            "jitter": {"enum": [j.value for j in Jitter], "default": Jitter.FULL.value},
        },
        required=[],
    )
    submission = _obj(
        {
            "task": {
                "type": "string",
                "minLength": 1,
                "maxLength": TASK_LEN_MAX,
                "description": "sleep, http, shell (checked at submit), or a Python handler",
            },
            "args": {"type": "object", "default": {}},
            "queue": {**QUEUE, "maxLength": QUEUE_LEN_MAX, "default": "default"},
            "priority": {
                "type": "integer",
                "minimum": PRIORITY_MIN,
                "maximum": PRIORITY_MAX,
                "default": 0,
            },
            "run_at": TIME_IN,
            "delay_seconds": {
                "type": "number",
                "minimum": 0,
                "maximum": DELAY_S_MAX,
                "description": (
                    "instead of run_at: due this long after the store's now; 0, or at least "
                    f"{DURATION_S_MIN:g}"
                ),
            },
            "max_attempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_ATTEMPTS_MAX,
                "default": MAX_ATTEMPTS_DEFAULT,
            },
            "backoff": _ref("BackoffInput"),
            "timeout_seconds": {
                "type": "number",
                "minimum": DURATION_S_MIN,
                "maximum": SECONDS_MAX,
            },
            "idempotency_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": IDEMPOTENCY_KEY_LEN_MAX,
            },
            "depends_on": {
                "type": "array",
                "items": JOB_ID,
                "maxItems": DEPENDS_ON_MAX,
                "default": [],
            },
        },
        required=["task"],
    )
    error_info = _obj({"type": {"type": "string"}, "message": {"type": "string"}})
    job = _obj(
        {
            "id": JOB_ID,
            "task": {"type": "string"},
            "args": {"type": "object"},
            "queue": QUEUE,
            "priority": {"type": "integer"},
            "run_at": TIME_OUT,
            "max_attempts": {"type": "integer"},
            "backoff": _ref("Backoff"),
            "timeout_seconds": _nullable({"type": "number"}),
            "idempotency_key": _nullable({"type": "string"}),
            "depends_on": {"type": "array", "items": JOB_ID},
            "state": {"enum": STATES},
            "attempt": {"type": "integer", "minimum": 0},
            "created_at": TIME_OUT,
            "updated_at": TIME_OUT,
            "finished_at": _nullable(TIME_OUT),
            "lease": _nullable(_obj({"worker": {"type": "string"}, "expires_at": TIME_OUT})),
            "cancel_requested": {"type": "boolean"},
            "checkpoint": {"description": "any JSON value the handler saved, or null"},
            "result": {"description": "any JSON value the handler returned, or null"},
            "last_error": _nullable(_ref("ErrorInfo")),
            "correlation_id": _nullable({"type": "string"}),
        }
    )
    attempt = _obj(
        {
            "attempt": {"type": "integer", "minimum": 1},
            "worker": {"type": "string"},
            "started_at": TIME_OUT,
            "finished_at": _nullable(TIME_OUT),
            "outcome": {"enum": [o.value for o in Outcome]},
            "error": _nullable(
                _obj(
                    {
                        "type": {"type": "string"},
                        "message": {"type": "string"},
                        "traceback": _nullable({"type": "string"}),
                    }
                )
            ),
            "duration_seconds": _nullable({"type": "number", "minimum": 0}),
        }
    )
    strings = {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": FILTER_VALUES_MAX,
            },
        ]
    }
    return {
        "JobSubmission": submission,
        "BackoffInput": backoff_in,
        "Backoff": backoff_out,
        "Job": job,
        "ErrorInfo": error_info,
        "Attempt": attempt,
        "Batch": _obj(
            {
                "jobs": {
                    "type": "array",
                    "items": _ref("JobSubmission"),
                    "minItems": 1,
                    "maxItems": BATCH_MAX,
                }
            }
        ),
        "JobArray": _obj({"jobs": {"type": "array", "items": _ref("Job")}}),
        "ListedJob": {
            **job,
            "required": [f for f in job["required"] if f not in LISTED_ON_REQUEST],
            "description": "a job as listed: "
            + ", ".join(LISTED_ON_REQUEST)
            + " only when the include parameter names them",
        },
        "JobPage": _obj(
            {
                "jobs": {"type": "array", "items": _ref("ListedJob")},
                "next_cursor": _nullable(
                    {
                        "type": "string",
                        "description": "the next page: there are more jobs, or this page "
                        f"was cut at {PAGE_BYTES_MAX // (1024 * 1024)} MiB",
                    }
                ),
            }
        ),
        "JobChange": {
            **_obj(
                {
                    "priority": {
                        "type": "integer",
                        "minimum": PRIORITY_MIN,
                        "maximum": PRIORITY_MAX,
                    },
                    "run_at": TIME_IN,
                },
                required=[],
            ),
            "minProperties": 1,
        },
        "AttemptList": _obj({"attempts": {"type": "array", "items": _ref("Attempt")}}),
        "JobFilter": {
            **_obj({"state": strings, "queue": strings, "task": strings}, required=[]),
            "minProperties": 1,
        },
        "Count": _obj({"count": {"type": "integer", "minimum": 0}}),
        "DryRunCount": _obj(
            {
                "count": {"type": "integer", "minimum": 0},
                "exact": {
                    "type": "boolean",
                    "description": "false: more jobs matched than a count looks at "
                    f"({BULK_COUNT_SCAN_MAX:,}); count is then a lower bound",
                },
                "dry_run": {"const": True},
            }
        ),
        "Queue": _obj(
            {
                "name": QUEUE,
                "paused": {"type": "boolean"},
                "counts": _obj({state: {"type": "integer", "minimum": 0} for state in STATES}),
                "oldest_queued_age_seconds": _nullable({"type": "number", "minimum": 0}),
            }
        ),
        "QueueList": _obj({"queues": {"type": "array", "items": _ref("Queue")}}),
        "QueuePause": _obj({"name": QUEUE, "paused": {"type": "boolean"}}),
        "Worker": _obj(
            {
                "id": {"type": "string"},
                "host": {"type": "string"},
                "pid": {"type": "integer"},
                "queues": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "empty: every queue",
                },
                "concurrency": {"type": "integer", "minimum": 1},
                "started_at": TIME_OUT,
                "last_heartbeat_at": TIME_OUT,
                "running_job_ids": {"type": "array", "items": JOB_ID},
            }
        ),
        "WorkerList": _obj({"workers": {"type": "array", "items": _ref("Worker")}}),
        "Scheduler": _obj(
            {
                "id": {"type": "string"},
                "host": {"type": "string"},
                "pid": {"type": "integer"},
                "leader": {"type": "boolean"},
                "term": _nullable({"type": "integer"}),
                "last_heartbeat_at": TIME_OUT,
            }
        ),
        "SchedulerList": _obj({"schedulers": {"type": "array", "items": _ref("Scheduler")}}),
        "Stats": _obj(
            {
                "window_seconds": {"type": "integer"},
                "succeeded": {"type": "integer", "minimum": 0},
                "dead": {"type": "integer", "minimum": 0},
                "failed_attempts": {"type": "integer", "minimum": 0},
                "throughput_per_second": {"type": "number", "minimum": 0},
                "run_seconds_p50": _nullable({"type": "number"}),
                "run_seconds_p95": _nullable({"type": "number"}),
            }
        ),
        "Health": _obj({"status": {"const": "ok"}}),
        "Readiness": _obj(
            {
                "status": {"enum": ["ok", "unavailable"]},
                "checks": {
                    "type": "object",
                    "properties": {
                        "store": {"type": "string"},
                        "coordinator": {"type": "string"},
                    },
                    "required": ["store"],
                    "additionalProperties": False,
                    "description": "ok, or down: <why>",
                },
            }
        ),
        "Problem": _obj(
            {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": _obj(
                        {
                            "field": {
                                "type": "string",
                                "description": "a dotted path (jobs[1].priority), a query "
                                "parameter or header name, or empty for the whole body",
                            },
                            "message": {"type": "string"},
                        }
                    ),
                },
            },
            required=["type", "title", "status", "detail"],
        ),
    }


PROBLEMS = {
    "400": "the request cannot be read: malformed JSON, a body that is not an object, "
    "a bad query parameter or cursor",
    "401": "missing or wrong bearer token",
    "404": "no such job (a malformed id is not found either) or no such resource",
    "405": "the method is not allowed on this path",
    "409": "the job's state does not allow the action, or an idempotency key was reused "
    "with a different body",
    "413": "body over 1 MiB (16 MiB for /v1/jobs/batch)",
    "415": "a content type other than application/json",
    "422": "well-formed JSON that fails validation; `errors` names each field",
    "500": "the server failed; the X-Request-ID names it in the logs",
    "503": "the store (or the coordinator) is unavailable; see Retry-After",
}


def _problem_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, text in PROBLEMS.items():
        response: dict[str, Any] = {
            "description": text,
            "content": {PROBLEM: {"schema": _ref("Problem")}},
            "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        }
        if status == "401":
            response["headers"]["WWW-Authenticate"] = {
                "schema": {"type": "string"},
                "description": 'Bearer realm="taskyard"',
            }
        if status == "503":
            response["headers"]["Retry-After"] = {
                "schema": {"type": "integer"},
                "description": "seconds to wait before trying again",
            }
        out[status] = response
    return out


def _ok(schema: str, description: str, *, location: bool = False) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
    if location:
        headers["Location"] = {
            "schema": {"type": "string"},
            "description": "/v1/jobs/{id} of the job",
        }
    return {
        "description": description,
        "headers": headers,
        "content": {JSON: {"schema": _ref(schema)}},
    }


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/Problem{s}"} for s in statuses}


def _body(schema: str, description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {JSON: {"schema": _ref(schema)}},
    }


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    open_: bool = False,
    tag: str = "jobs",
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    common = [] if open_ else [401, 500, 503]
    operation["responses"].update(_problems(*common))
    if body is not None:
        operation["requestBody"] = body
        operation["responses"].update(_problems(400, 413, 415, 422))
    if parameters:
        operation["parameters"] = parameters
    if open_:
        operation["security"] = []
    return operation


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _query(name: str, schema: dict[str, Any], description: str, *, many: bool = False) -> Any:
    param: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "array", "items": schema} if many else schema,
    }
    if many:
        param["style"] = "form"
        param["explode"] = True
    return param


def _counted(description: str) -> dict[str, Any]:
    """The answer of a bulk action: its count, or a dry run's."""
    response = _ok("Count", description)
    response["content"][JSON]["schema"] = {"oneOf": [_ref("Count"), _ref("DryRunCount")]}
    return response


def _paths() -> dict[str, Any]:
    dry_run = _query(
        "dry_run",
        {"type": "string", "enum": ["true", "false", "1", "0"], "default": "false"},
        "true: change nothing, answer how many jobs the action would change now",
    )
    job_id = [_param("JobId")]
    by_id = _problems(400, 404)  # 400: an unknown query parameter
    job_ok = _ok("Job", "the job")
    return {
        "/": {
            "get": _op(
                "A small HTML landing page",
                {
                    "200": {
                        "description": "the page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                open_=True,
                tag="system",
            )
        },
        "/healthz": {
            "get": _op(
                "The process answers",
                {"200": _ok("Health", "alive")},
                open_=True,
                tag="system",
            )
        },
        "/readyz": {
            "get": _op(
                "The store (and the coordinator, when configured) answer",
                {
                    "200": _ok("Readiness", "ready"),
                    "503": {
                        "description": "something is down; checks names it",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {JSON: {"schema": _ref("Readiness")}},
                    },
                },
                open_=True,
                tag="system",
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus exposition, gathered through the store and coordinator",
                {
                    "200": {
                        "description": "metrics in the Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                open_=True,
                tag="system",
            )
        },
        "/openapi.json": {
            "get": _op(
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
                open_=True,
                tag="system",
            )
        },
        "/v1/jobs": {
            "post": _op(
                "Submit one job",
                {
                    "201": _ok("Job", "created", location=True),
                    "200": _ok(
                        "Job",
                        "the existing job: the same idempotency key came with the same body",
                        location=True,
                    ),
                    **_problems(409),
                },
                body=_body("JobSubmission", "the submission"),
                parameters=[_param("IdempotencyKey")],
            ),
            "get": _op(
                "List jobs, newest first by (created_at, id)",
                {"200": _ok("JobPage", "a page of jobs"), **_problems(400)},
                parameters=[
                    _query("state", {"enum": STATES}, "any of these states", many=True),
                    _query("queue", QUEUE, "any of these queues", many=True),
                    _query("task", {"type": "string"}, "any of these tasks", many=True),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": query.LIMIT_MAX,
                            "default": query.LIMIT_DEFAULT,
                        },
                        "jobs per page",
                    ),
                    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
                    _query(
                        "include",
                        {"enum": list(LISTED_ON_REQUEST)},
                        "fields to list besides the default ones (repeat for several)",
                        many=True,
                    ),
                ],
            ),
        },
        "/v1/jobs/batch": {
            "post": _op(
                "Submit 1 to 1,000 jobs, all or nothing",
                {"201": _ok("JobArray", "the jobs, in the order given"), **_problems(409)},
                body=_body("Batch", "the submissions (errors name jobs[i].field)"),
            )
        },
        "/v1/jobs/retry": {
            "post": _op(
                "Run every dead or cancelled job the filter matches again",
                {"200": _counted("how many jobs were retried (or, dry, would be)")},
                body=_body("JobFilter", "state, queue, task: each a string or a list"),
                parameters=[dry_run],
            )
        },
        "/v1/jobs/cancel": {
            "post": _op(
                "Cancel every unfinished job the filter matches",
                {
                    "200": _counted(
                        "how many jobs were cancelled or asked to stop (or, dry, would be)"
                    )
                },
                body=_body("JobFilter", "state, queue, task: each a string or a list"),
                parameters=[dry_run],
            )
        },
        "/v1/jobs/{job_id}": {
            "get": _op("One job", {"200": job_ok, **by_id}, parameters=job_id),
            "patch": _op(
                "Change priority and/or run_at of a scheduled, queued or retrying job",
                {"200": job_ok, **by_id, **_problems(409)},
                body=_body("JobChange", "priority and/or run_at; any other field is a 422"),
                parameters=job_id,
            ),
            "delete": _op(
                "Cancel (as POST .../cancel)",
                {"200": job_ok, **by_id, **_problems(409)},
                parameters=job_id,
            ),
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": _op(
                "Cancel: a running job gets cancel_requested; again is harmless",
                {"200": job_ok, **by_id, **_problems(409)},
                parameters=job_id,
            )
        },
        "/v1/jobs/{job_id}/retry": {
            "post": _op(
                "Run a dead or cancelled job again, with a fresh attempt budget",
                {"200": job_ok, **by_id, **_problems(409)},
                parameters=job_id,
            )
        },
        "/v1/jobs/{job_id}/attempts": {
            "get": _op(
                "The attempt history, oldest first",
                {"200": _ok("AttemptList", "the attempts"), **by_id},
                parameters=job_id,
            )
        },
        "/v1/queues": {
            "get": _op(
                "Every queue that has jobs or a pause flag",
                {"200": _ok("QueueList", "the queues"), **_problems(400)},
                tag="queues",
            )
        },
        "/v1/queues/{name}/pause": {
            "post": _op(
                "Stop claims from a queue (kept in the store)",
                {"200": _ok("QueuePause", "paused"), **_problems(400, 404)},
                parameters=[_param("QueueName")],
                tag="queues",
            )
        },
        "/v1/queues/{name}/resume": {
            "post": _op(
                "Let claims from a queue go on",
                {"200": _ok("QueuePause", "resumed"), **_problems(400, 404)},
                parameters=[_param("QueueName")],
                tag="queues",
            )
        },
        "/v1/workers": {
            "get": _op(
                "Live workers (gone within 15 s of their last heartbeat)",
                {"200": _ok("WorkerList", "the workers"), **_problems(400)},
                tag="system",
            )
        },
        "/v1/schedulers": {
            "get": _op(
                "Live schedulers and which one leads",
                {"200": _ok("SchedulerList", "the schedulers"), **_problems(400)},
                tag="system",
            )
        },
        "/v1/stats": {
            "get": _op(
                "Outcomes over a window",
                {"200": _ok("Stats", "the numbers"), **_problems(400)},
                parameters=[
                    _query(
                        "window",
                        {
                            "type": "integer",
                            "minimum": query.WINDOW_S_MIN,
                            "maximum": query.WINDOW_S_MAX,
                            "default": query.WINDOW_S_DEFAULT,
                        },
                        "seconds",
                    )
                ],
                tag="system",
            )
        },
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskyard",
            "version": __version__,
            "description": "A fault-tolerant distributed job scheduler. Times are RFC 3339; "
            "output is UTC with milliseconds and Z. Errors are application/problem+json.",
        },
        "tags": [
            {"name": "jobs"},
            {"name": "queues"},
            {"name": "system"},
        ],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "needed by every operation not marked open (security: []) when "
                    "TASKYARD_API_TOKENS is set; without it, a path that matches no route is "
                    "a 401 too",
                }
            },
            "headers": {
                "RequestId": {
                    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,128}$"},
                    "description": "the request's id: the client's X-Request-ID when valid, "
                    "else a new one",
                }
            },
            "parameters": {
                "JobId": {
                    "name": "job_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "a job id (UUID); a malformed one is not found",
                },
                "QueueName": {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": QUEUE,
                },
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": IDEMPOTENCY_KEY_LEN_MAX,
                    },
                    "description": "the same as the idempotency_key field (both and "
                    "different: 422)",
                },
            },
            "responses": {
                f"Problem{status}": response for status, response in _problem_responses().items()
            },
            "schemas": _schemas(),
        },
    }
