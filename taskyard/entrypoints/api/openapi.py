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

import re
from collections.abc import Mapping
from typing import Any

from taskyard import __version__
from taskyard.domain import contract as c
from taskyard.domain import schema as k
from taskyard.entrypoints.api.access import Access
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
RETRY_AFTER = ("Retry-After", "integer", "seconds to wait before trying again")
HEADERS = {"401": [("WWW-Authenticate", "string", 'Bearer realm="taskyard"')], "503": [RETRY_AFTER]}
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
            "headers": _headers(*HEADERS.get(status, [])),
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


def _plain(media: str, text: str, kind: str = "string") -> dict[str, Any]:
    return {"description": text, "content": {media: {"schema": {"type": kind}}}}


PATH_PARAMS = {"job_id": c.JOB_ID_PARAM, "name": c.QUEUE_PARAM}
SCHEDULE_PATH_PARAMS = {"name": c.SCHEDULE_PARAM}


def _paths() -> dict[str, dict[str, dict[str, Any]]]:
    """Every operation. Its tag, path parameters and most of its statuses follow from its
    path: under /v1/, a 400 for a bad query parameter; with a path parameter, a 404; with
    a body, 400, 413, 415 and 422; `conflict`, a 409."""
    paths: dict[str, dict[str, dict[str, Any]]] = {}

    def op(
        method_path: str,
        summary: str,
        ok: k.Shape | tuple[k.Shape, ...] | dict[str, Any],
        *,
        conflict: bool = False,
        body: k.Shape | None = None,
        params: tuple[k.Param, ...] = (),
    ) -> None:
        method, path = method_path.split(" ")
        tags = ("jobs", "queues", "schedules")
        tag = next((t for t in tags if path.startswith(f"/v1/{t}")), "system")
        params_by_name = SCHEDULE_PATH_PARAMS if tag == "schedules" else PATH_PARAMS
        named = [params_by_name[name] for name in re.findall(r"{(\w+)}", path)]
        problems = {400} if path.startswith("/v1/") else set()
        problems |= {404} if named else set()
        problems |= {409} if conflict else set()
        responses = ok if isinstance(ok, dict) else {"200": _ok(ok, summary)}
        operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
        if body is not None:
            content = {JSON: {"schema": _ref(body.name)}}
            operation["requestBody"] = {
                "required": True,
                "description": body.description,
                "content": content,
            }
            problems |= {400, 413, 415, 422}
        for status in sorted(problems):
            operation["responses"][str(status)] = {
                "$ref": f"#/components/responses/Problem{status}"
            }
        if named or params:
            operation["parameters"] = [*named, *params]
        paths.setdefault(path, {})[method.lower()] = operation

    located = _headers(("Location", "string", "/v1/jobs/{id} of the job"))
    submitted = {
        "201": {**_ok(c.SUBMITTED_JOB, "created"), "headers": located},
        "200": {**_ok(c.SUBMITTED_JOB, "the job this idempotency key made"), "headers": located},
    }
    ready = {
        "200": _ok(c.READINESS, "ready"),
        "503": {**_ok(c.READINESS, "down"), "headers": _headers(RETRY_AFTER)},
    }
    counted, dry = (c.BULK_COUNT, c.DRY_RUN_COUNT), (c.DRY_RUN,)
    op("GET /", "A small HTML landing page", {"200": _plain("text/html", "the page")})
    op("GET /healthz", "The process answers", c.HEALTH)
    op("GET /readyz", "The store (and the coordinator, when configured) answer", ready)
    op("GET /metrics", "Prometheus exposition", {"200": _plain("text/plain", "metrics")})
    op("GET /openapi.json", "This document", {"200": _plain(JSON, "OpenAPI 3.1", "object")})
    op(
        "POST /v1/jobs",
        "Submit one job",
        submitted,
        conflict=True,
        body=c.SUBMISSION,
        params=(c.IDEMPOTENCY_KEY_HEADER, c.TRACEPARENT_HEADER, c.TRACESTATE_HEADER),
    )
    op(
        "GET /v1/jobs",
        "List jobs, newest first by (created_at, id)",
        c.JOB_PAGE,
        params=c.LISTING_PARAMS,
    )
    op(
        "POST /v1/jobs/batch",
        "Submit 1 to 1,000 jobs, all or nothing",
        {"201": _ok(c.SUBMITTED_JOBS, "created")},
        conflict=True,
        body=c.BATCH,
        params=(c.TRACEPARENT_HEADER, c.TRACESTATE_HEADER),
    )
    op(
        "POST /v1/jobs/retry",
        "Run every dead or cancelled job the filter matches again",
        counted,
        body=c.FILTER,
        params=dry,
    )
    op(
        "POST /v1/jobs/cancel",
        "Cancel every unfinished job the filter matches",
        counted,
        body=c.FILTER,
        params=dry,
    )
    op("GET /v1/jobs/{job_id}", "One job, and why it waits", c.JOB_DETAIL)
    op(
        "PATCH /v1/jobs/{job_id}",
        "Change priority and/or run_at of a waiting job",
        c.JOB,
        conflict=True,
        body=c.CHANGE,
    )
    op("DELETE /v1/jobs/{job_id}", "Cancel (as POST .../cancel)", c.JOB, conflict=True)
    op(
        "POST /v1/jobs/{job_id}/cancel",
        "Cancel: a running job is asked to stop",
        c.JOB,
        conflict=True,
    )
    op("POST /v1/jobs/{job_id}/retry", "Run a dead or cancelled job again", c.JOB, conflict=True)
    op("GET /v1/jobs/{job_id}/attempts", "The attempt history, oldest first", c.ATTEMPT_LIST)
    op(
        "GET /v1/queues",
        "Every queue that has jobs, limits or a pause flag: counts, limits, usage",
        c.QUEUE_LIST,
    )
    op(
        "GET /v1/queues/{name}",
        "A queue's settings (the defaults for a queue without any)",
        c.QUEUE_SETTINGS,
    )
    op(
        "PUT /v1/queues/{name}",
        "Replace a queue's settings whole: limits, weight, its own retention",
        c.QUEUE_SETTINGS,
        body=c.QUEUE_SETTINGS_INPUT,
    )
    op(
        "POST /v1/queues/{name}/pause",
        "Stop claims from a queue (kept in the store)",
        c.QUEUE_PAUSE,
    )
    op("POST /v1/queues/{name}/resume", "Let claims from a queue go on", c.QUEUE_PAUSE)
    op("GET /v1/tasks", "The task catalog: what the workers published", c.TASK_LIST)
    schedule_located = _headers(("Location", "string", "/v1/schedules/{name} of the schedule"))
    op(
        "POST /v1/schedules",
        "Create a schedule (409: the name is taken)",
        {"201": {**_ok(c.SCHEDULE, "created"), "headers": schedule_located}},
        conflict=True,
        body=c.SCHEDULE_INPUT,
    )
    op("GET /v1/schedules", "Every schedule, by name", c.SCHEDULE_LIST)
    op("GET /v1/schedules/{name}", "One schedule: next fire, recent fires", c.SCHEDULE)
    op(
        "PATCH /v1/schedules/{name}",
        "Change any field but the name (a new timing starts from now)",
        c.SCHEDULE,
        body=c.SCHEDULE_CHANGE,
    )
    op(
        "DELETE /v1/schedules/{name}",
        "Delete a schedule (answered as it was; the jobs it fired stay)",
        c.SCHEDULE,
    )
    op("POST /v1/schedules/{name}/pause", "No fires until resumed", c.SCHEDULE)
    op(
        "POST /v1/schedules/{name}/resume",
        "Fire again from the next fire time (the pause is not caught up)",
        c.SCHEDULE,
    )
    op("GET /v1/workers", "Live workers (gone 15 s after their last heartbeat)", c.WORKER_LIST)
    op("GET /v1/schedulers", "Live schedulers and which one leads", c.SCHEDULER_LIST)
    op("GET /v1/stats", "Outcomes over a window", c.STATS, params=(c.WINDOW,))
    return paths


def _operations(renderer: Renderer, access: Mapping[str, Access]) -> dict[str, Any]:
    """The paths, each operation marked open (`security: []`) or answering 401, 500 and
    503 as its route's access says, its parameters rendered."""
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


def openapi_document(access: Mapping[str, Access]) -> dict[str, Any]:
    """The document, given each route template's access (`app.api_document` passes the
    route table's: this module does not import it, as the table's resources serve it)."""
    renderer = Renderer()
    paths = _operations(renderer, access)
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
        "tags": [{"name": n} for n in ("jobs", "queues", "schedules", "system")],
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
