"""The OpenAPI 3.1 document of the API, served at `/openapi.json`.

The schemas and parameters are rendered from the declaration in
`taskyard.domain.contract`, the one the validation is compiled from; which operations
need a token comes from `ROUTES`. What is written here is only what HTTP adds: the
operations, their summaries and statuses. Tests hold it to the code: one walks the
Falcon router and fails when a route or method is missing here (or here but not routed);
another checks every response the API tests receive against the schema documented for
its route, method and status.
"""

from __future__ import annotations

from typing import Any

from taskyard import __version__
from taskyard.domain import contract as c
from taskyard.domain import schema as k
from taskyard.entrypoints.api.body import BATCH_BODY_BYTES_MAX, BODY_BYTES_MAX
from taskyard.entrypoints.api.middleware import REQUEST_ID as REQUEST_ID_PATTERN

TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
"""Answers write ids in lower case; `depends_on` takes either."""
JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _bounded(
    out: dict[str, Any], low_key: str, low: Any, high_key: str, high: Any
) -> dict[str, Any]:
    if low is not None:
        out[low_key] = low
    if high is not None:
        out[high_key] = high
    return out


class Renderer:
    """Kinds to JSON Schema; every shape met on the way becomes a component."""

    def __init__(self) -> None:
        self.shapes: dict[str, dict[str, Any]] = {}

    def kind(self, kind: k.Kind) -> dict[str, Any]:
        if isinstance(kind, k.Text):
            out: dict[str, Any] = {"type": "string"}
            if kind.pattern is not None:
                out["pattern"] = f"^{kind.pattern}$"
            return _bounded(out, "minLength", kind.min_len or None, "maxLength", kind.max_len)
        if isinstance(kind, k.Integer):
            return _bounded({"type": "integer"}, "minimum", kind.low, "maximum", kind.high)
        if isinstance(kind, k.Number):
            low_key = "exclusiveMinimum" if kind.low_exclusive else "minimum"
            number = _bounded({"type": "number"}, low_key, kind.low, "maximum", kind.high)
            return {"oneOf": [{"const": 0}, number]} if kind.zero else number
        if isinstance(kind, k.Boolean):
            return {"type": "boolean"}
        if isinstance(kind, k.Choice):
            return {"type": "string", "enum": list(kind.values)}
        if isinstance(kind, k.Const):
            return {"const": kind.value}
        if isinstance(kind, k.Time):
            if kind.output:
                return {"type": "string", "format": "date-time", "pattern": TIME_PATTERN}
            return {"type": "string", "format": "date-time", "description": k.TIME_WORDS}
        if isinstance(kind, k.JobId):
            return {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
        if isinstance(kind, k.JsonObject):
            return {"type": "object"}
        if isinstance(kind, k.AnyJson):
            return {}
        if isinstance(kind, k.ListOf):
            listed = {"type": "array", "items": self.kind(kind.item)}
            return _bounded(listed, "minItems", kind.min_items or None, "maxItems", kind.max_items)
        if isinstance(kind, k.OneOrMany):
            item = self.kind(kind.item)
            many = {"type": "array", "items": item, "minItems": 1, "maxItems": kind.max_items}
            return {"oneOf": [item, many]}
        return self.shape(kind)

    def shape(self, shape: k.Shape) -> dict[str, str]:
        if shape.name not in self.shapes:
            self.shapes[shape.name] = {}  # a shape met again while rendered: its $ref
            out: dict[str, Any] = {
                "type": "object",
                "properties": {f.name: self.field(f) for f in shape.fields},
                "required": [f.name for f in shape.fields if f.required],
                "additionalProperties": False,
            }
            if shape.at_least_one is not None:
                out["minProperties"] = 1
            if shape.description:
                out["description"] = shape.description
            self.shapes[shape.name] = out
        return _ref(shape.name)

    def field(self, field: k.Field | k.Param) -> dict[str, Any]:
        out = self.kind(field.kind)
        if getattr(field, "nullable", False):
            out = {"oneOf": [out, {"type": "null"}]}
        if field.description:
            out = {**out, "description": field.description}
        if field.default is not k.ABSENT:
            out = {**out, "default": field.default}
        return out

    def param(self, param: k.Param) -> dict[str, Any]:
        schema = self.field(param)
        description = schema.pop("description", "")
        out: dict[str, Any] = {
            "name": param.name,
            "in": param.where,
            "required": param.where == "path",
            "schema": {"type": "array", "items": schema} if param.many else schema,
        }
        if param.many:
            out |= {"style": "form", "explode": True}
        return out | ({"description": description} if description else {})


MiB = 1024 * 1024
PROBLEMS = {
    "400": "the request cannot be read: malformed JSON, a body that is not an object, "
    "a bad query parameter or cursor",
    "401": "missing or wrong bearer token",
    "404": "no such job (a malformed id is not found either) or no such resource",
    "405": "the method is not allowed on this path",
    "409": "the job's state does not allow the action, or an idempotency key was reused "
    "with a different body",
    "413": f"body over {BODY_BYTES_MAX // MiB} MiB "
    f"({BATCH_BODY_BYTES_MAX // MiB} MiB for /v1/jobs/batch)",
    "415": "a content type other than application/json",
    "422": "well-formed JSON that fails validation; `errors` names each field",
    "500": "the server failed; the X-Request-ID names it in the logs",
    "503": "the store (or the coordinator) is unavailable; see Retry-After",
}
HEADERS = {
    "401": {"WWW-Authenticate": ("string", 'Bearer realm="taskyard"')},
    "503": {"Retry-After": ("integer", "seconds to wait before trying again")},
}
REQUEST_ID = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}


def _headers(*names: tuple[str, str, str]) -> dict[str, Any]:
    return {
        **REQUEST_ID,
        **{name: {"schema": {"type": kind}, "description": text} for name, kind, text in names},
    }


def _problem_responses() -> dict[str, Any]:
    return {
        f"Problem{status}": {
            "description": text,
            "content": {PROBLEM: {"schema": _ref("Problem")}},
            "headers": _headers(*((n, t, d) for n, (t, d) in HEADERS.get(status, {}).items())),
        }
        for status, text in PROBLEMS.items()
    }


def _ok(answer: k.Shape | tuple[k.Shape, ...], text: str, *, media: str = JSON) -> Any:
    shapes = answer if isinstance(answer, tuple) else (answer,)
    schema = [_ref(s.name) for s in shapes]
    return {
        "description": text,
        "headers": _headers(),
        "content": {media: {"schema": schema[0] if len(schema) == 1 else {"oneOf": schema}}},
    }


def _plain(media: str, text: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": text, "content": {media: {"schema": schema}}}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    problems: tuple[int, ...] = (),
    body: tuple[k.Shape, str] | None = None,
    params: tuple[k.Param, ...] = (),
    tag: str = "jobs",
) -> dict[str, Any]:
    """An operation; `security` and the statuses every protected operation may answer are
    added by `_operations` from the route's access."""
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": dict(ok)}
    if body is not None:
        shape, text = body
        content = {JSON: {"schema": _ref(shape.name)}}
        operation["requestBody"] = {"required": True, "description": text, "content": content}
        problems = (*problems, 400, 413, 415, 422)
    for status in sorted(problems):
        operation["responses"][str(status)] = {"$ref": f"#/components/responses/Problem{status}"}
    if params:
        operation["parameters"] = list(params)
    return operation


LOCATION = ("Location", "string", "/v1/jobs/{id} of the job")
ONE_JOB = (400, 404)  # 400: any query parameter


def _paths() -> dict[str, dict[str, dict[str, Any]]]:
    job_ok = _ok(c.JOB, "the job")
    by_id = (c.JOB_ID_PARAM,)
    filter_body = (c.FILTER, "state, queue, task: each a string or a list")
    counted = (c.BULK_COUNT, c.DRY_RUN_COUNT)
    return {
        "/": {
            "get": _op(
                "A small HTML landing page",
                {"200": _plain("text/html", "the page", {"type": "string"})},
                tag="system",
            )
        },
        "/healthz": {
            "get": _op("The process answers", {"200": _ok(c.HEALTH, "alive")}, tag="system")
        },
        "/readyz": {
            "get": _op(
                "The store (and the coordinator, when configured) answer",
                {
                    "200": _ok(c.READINESS, "ready"),
                    "503": {
                        **_ok(c.READINESS, "something is down; checks names it"),
                        "headers": _headers(("Retry-After", "integer", "1")),
                    },
                },
                tag="system",
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus exposition, gathered through the store and coordinator",
                {
                    "200": _plain(
                        "text/plain", "metrics in the Prometheus text format", {"type": "string"}
                    )
                },
                tag="system",
            )
        },
        "/openapi.json": {
            "get": _op(
                "This document",
                {"200": _plain(JSON, "OpenAPI 3.1", {"type": "object"})},
                tag="system",
            )
        },
        "/v1/jobs": {
            "post": _op(
                "Submit one job",
                {
                    "201": {**_ok(c.JOB, "created"), "headers": _headers(LOCATION)},
                    "200": {
                        **_ok(
                            c.JOB,
                            "the existing job: the same idempotency key came with the same body",
                        ),
                        "headers": _headers(LOCATION),
                    },
                },
                problems=(409,),
                body=(c.SUBMISSION, "the submission"),
                params=(c.IDEMPOTENCY_KEY_HEADER,),
            ),
            "get": _op(
                "List jobs, newest first by (created_at, id)",
                {"200": _ok(c.JOB_PAGE, "a page of jobs")},
                problems=(400,),
                params=c.LISTING_PARAMS,
            ),
        },
        "/v1/jobs/batch": {
            "post": _op(
                "Submit 1 to 1,000 jobs, all or nothing",
                {"201": _ok(c.JOB_ARRAY, "the jobs, in the order given")},
                problems=(409,),
                body=(c.BATCH, "the submissions (errors name jobs[i].field)"),
            )
        },
        "/v1/jobs/retry": {
            "post": _op(
                "Run every dead or cancelled job the filter matches again",
                {"200": _ok(counted, "how many jobs were retried (or, dry, would be)")},
                body=filter_body,
                params=(c.DRY_RUN,),
            )
        },
        "/v1/jobs/cancel": {
            "post": _op(
                "Cancel every unfinished job the filter matches",
                {
                    "200": _ok(
                        counted, "how many jobs were cancelled or asked to stop (or, dry, would be)"
                    )
                },
                body=filter_body,
                params=(c.DRY_RUN,),
            )
        },
        "/v1/jobs/{job_id}": {
            "get": _op("One job", {"200": job_ok}, problems=ONE_JOB, params=by_id),
            "patch": _op(
                "Change priority and/or run_at of a scheduled, queued or retrying job",
                {"200": job_ok},
                problems=(*ONE_JOB, 409),
                body=(c.CHANGE, "priority and/or run_at; any other field is a 422"),
                params=by_id,
            ),
            "delete": _op(
                "Cancel (as POST .../cancel)",
                {"200": job_ok},
                problems=(*ONE_JOB, 409),
                params=by_id,
            ),
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": _op(
                "Cancel: a running job gets cancel_requested; again is harmless",
                {"200": job_ok},
                problems=(*ONE_JOB, 409),
                params=by_id,
            )
        },
        "/v1/jobs/{job_id}/retry": {
            "post": _op(
                "Run a dead or cancelled job again, with a fresh attempt budget",
                {"200": job_ok},
                problems=(*ONE_JOB, 409),
                params=by_id,
            )
        },
        "/v1/jobs/{job_id}/attempts": {
            "get": _op(
                "The attempt history, oldest first",
                {"200": _ok(c.ATTEMPT_LIST, "the attempts")},
                problems=ONE_JOB,
                params=by_id,
            )
        },
        "/v1/queues": {
            "get": _op(
                "Every queue that has jobs or a pause flag",
                {"200": _ok(c.QUEUE_LIST, "the queues")},
                problems=(400,),
                tag="queues",
            )
        },
        "/v1/queues/{name}/pause": {
            "post": _op(
                "Stop claims from a queue (kept in the store)",
                {"200": _ok(c.QUEUE_PAUSE, "paused")},
                problems=(400, 404),
                params=(c.QUEUE_PARAM,),
                tag="queues",
            )
        },
        "/v1/queues/{name}/resume": {
            "post": _op(
                "Let claims from a queue go on",
                {"200": _ok(c.QUEUE_PAUSE, "resumed")},
                problems=(400, 404),
                params=(c.QUEUE_PARAM,),
                tag="queues",
            )
        },
        "/v1/workers": {
            "get": _op(
                "Live workers (gone within 15 s of their last heartbeat)",
                {"200": _ok(c.WORKER_LIST, "the workers")},
                problems=(400,),
                tag="system",
            )
        },
        "/v1/schedulers": {
            "get": _op(
                "Live schedulers and which one leads",
                {"200": _ok(c.SCHEDULER_LIST, "the schedulers")},
                problems=(400,),
                tag="system",
            )
        },
        "/v1/stats": {
            "get": _op(
                "Outcomes over a window",
                {"200": _ok(c.STATS, "the numbers")},
                problems=(400,),
                params=(c.WINDOW,),
                tag="system",
            )
        },
    }


def _operations(renderer: Renderer) -> dict[str, Any]:
    """The paths, each operation marked open (`security: []`) or answering 401, 500 and
    503 as its route's access says, its parameters rendered."""
    from taskyard.entrypoints.api.access import Access
    from taskyard.entrypoints.api.app import ROUTES

    access = {route.template: route.access for route in ROUTES}
    paths = _paths()
    for path, item in paths.items():
        for operation in item.values():
            params = operation.get("parameters", [])
            operation["parameters"] = [renderer.param(p) for p in params]
            if not params:
                del operation["parameters"]
            if access.get(path) is Access.OPEN:
                operation["security"] = []
            else:
                for status in (401, 500, 503):
                    ref = {"$ref": f"#/components/responses/Problem{status}"}
                    operation["responses"].setdefault(str(status), ref)
    return paths


def openapi_document() -> dict[str, Any]:
    renderer = Renderer()
    paths = _operations(renderer)
    for declared in vars(c).values():
        if isinstance(declared, k.Shape):
            renderer.shape(declared)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskyard",
            "version": __version__,
            "description": "A fault-tolerant distributed job scheduler. Times are RFC 3339; "
            "output is UTC with milliseconds and Z. Errors are application/problem+json.",
        },
        "tags": [{"name": "jobs"}, {"name": "queues"}, {"name": "system"}],
        "security": [{"bearer": []}],
        "paths": paths,
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
                    "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN.pattern},
                    "description": "the request's id: the client's X-Request-ID when valid, "
                    "else a new one",
                }
            },
            "responses": _problem_responses(),
            "schemas": dict(sorted(renderer.shapes.items())),
        },
    }
