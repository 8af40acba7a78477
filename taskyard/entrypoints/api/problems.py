"""Errors as `application/problem+json` (RFC 9457), and the one place errors map to HTTP.

    {"type": "urn:taskyard:problem:validation", "title": "Validation failed", "status": 422,
     "detail": "...", "errors": [{"field": "backoff.jitter", "message": "..."}]}

Resources raise domain errors (`JobNotFound`, `IllegalTransition`, `ValidationError`, ...)
or a `Problem` for what only HTTP knows (a body that is not JSON, a missing token); the
handlers registered by `register_error_handlers` turn each into its status once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import falcon

from taskyard.domain.errors import (
    CoordinatorUnavailable,
    FieldError,
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    ScheduleExists,
    ScheduleNotFound,
    StaleFence,
    StoreUnavailable,
    UnknownDependency,
    ValidationError,
)

log = logging.getLogger("taskyard.api")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:taskyard:problem:"
RETRY_AFTER_S = 1
"""What a 503 asks the client to wait before trying again."""


@attrs.define(auto_exc=True, kw_only=True)
class Problem(Exception):
    """An HTTP refusal that no domain error stands for."""

    status: int
    kind: str
    title: str
    detail: str
    errors: Sequence[FieldError] = ()
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.kind}: {self.detail}"


def problem_document(
    *, status: int, kind: str, title: str, detail: str, errors: Sequence[FieldError] = ()
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": f"{TYPE_PREFIX}{kind}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        doc["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return doc


def render(resp: falcon.Response, problem: Problem) -> None:
    resp.status = problem.status
    resp.content_type = PROBLEM_JSON
    for name, value in problem.headers.items():
        resp.set_header(name, value)
    resp.text = json.dumps(
        problem_document(
            status=problem.status,
            kind=problem.kind,
            title=problem.title,
            detail=problem.detail,
            errors=problem.errors,
        )
    )


# --- constructors for the refusals that only HTTP knows ----------------------------------


def bad_request(detail: str, field: str | None = None) -> Problem:
    errors = [FieldError(field, detail)] if field is not None else []
    return Problem(
        status=400,
        kind="bad-request",
        title="The request cannot be read",
        detail=detail,
        errors=errors,
    )


def malformed_json(detail: str) -> Problem:
    return Problem(status=400, kind="malformed-json", title="Malformed JSON", detail=detail)


def unauthorized(*, token_given: bool) -> Problem:
    challenge = 'Bearer realm="taskyard"'
    if token_given:
        challenge += ', error="invalid_token"'
    return Problem(
        status=401,
        kind="unauthorized",
        title="Authentication required",
        detail=(
            "the bearer token is not one this API accepts"
            if token_given
            else "send Authorization: Bearer <token>"
        ),
        headers={"WWW-Authenticate": challenge},
    )


def not_found(detail: str) -> Problem:
    return Problem(status=404, kind="not-found", title="Not Found", detail=detail)


def too_large(limit_bytes: int) -> Problem:
    return Problem(
        status=413,
        kind="payload-too-large",
        title="Body too large",
        detail=f"the body is over {limit_bytes // (1024 * 1024)} MiB",
    )


def unsupported_media_type(content_type: str | None) -> Problem:
    shown = content_type or "none"
    return Problem(
        status=415,
        kind="unsupported-media-type",
        title="Unsupported media type",
        detail=f"send application/json (got {shown})",
    )


# --- the handlers -------------------------------------------------------------------------


def _problem_handler(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
) -> None:
    assert isinstance(ex, Problem)
    render(resp, ex)


def _invalid(errors: Sequence[FieldError]) -> Problem:
    """The 422 for fields that are wrong: its detail names the first three."""
    shown = "; ".join(f"{e.field or '(body)'}: {e.message}" for e in errors[:3])
    more = len(errors) - 3
    return Problem(
        status=422,
        kind="validation",
        title="Validation failed",
        detail=shown + (f" (and {more} more)" if more > 0 else ""),
        errors=errors,
    )


def _validation(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, ValidationError)
    render(resp, _invalid(ex.errors))


def _unknown_dependency(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
) -> None:
    assert isinstance(ex, UnknownDependency)
    render(resp, _invalid([FieldError(ex.field, f"no job {ex.job_id}")]))


def _not_found(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    render(resp, not_found(str(ex)))


def _schedule_exists(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
) -> None:
    render(resp, Problem(status=409, kind="conflict", title="Schedule exists", detail=str(ex)))


def _conflict(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, IllegalTransition | StaleFence)
    render(
        resp,
        Problem(status=409, kind="conflict", title="Not allowed in this state", detail=str(ex)),
    )


def _idempotency(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, IdempotencyConflict)
    render(
        resp,
        Problem(
            status=409,
            kind="idempotency-conflict",
            title="Idempotency key reused with a different body",
            detail=str(ex),
        ),
    )


def _unavailable(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    what = "store" if isinstance(ex, StoreUnavailable) else "coordinator"
    log.warning("%s unavailable: %s", what, ex)
    render(
        resp,
        Problem(
            status=503,
            kind=f"{what}-unavailable",
            title=f"The {what} is unavailable",
            detail=f"{ex}; try again",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ),
    )


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    log.error("unexpected error", exc_info=ex)
    render(
        resp,
        Problem(
            status=500,
            kind="internal",
            title="Internal server error",
            detail="the server failed; the request id names it in the logs",
        ),
    )


def serialize_http_error(
    req: falcon.Request, resp: falcon.Response, exception: falcon.HTTPError
) -> None:
    """Falcon's own errors (no route, method not allowed, a bad header) as problems."""
    status = exception.status_code
    phrase = falcon.code_to_http_status(status).split(" ", 1)[1]
    if status == 404:
        detail = f"no resource at {req.path}"
    elif status == 405:
        detail = f"{req.method} is not allowed on {req.path}"
    else:
        detail = exception.description or phrase
    resp.content_type = PROBLEM_JSON
    kind = "-".join(phrase.lower().replace("'", "").split())
    resp.text = json.dumps(problem_document(status=status, kind=kind, title=phrase, detail=detail))


def register_error_handlers(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(Problem, _problem_handler)
    app.add_error_handler(ValidationError, _validation)
    app.add_error_handler(UnknownDependency, _unknown_dependency)
    app.add_error_handler(JobNotFound, _not_found)
    app.add_error_handler(ScheduleNotFound, _not_found)
    app.add_error_handler(ScheduleExists, _schedule_exists)
    app.add_error_handler(IllegalTransition, _conflict)
    app.add_error_handler(StaleFence, _conflict)
    app.add_error_handler(IdempotencyConflict, _idempotency)
    app.add_error_handler(StoreUnavailable, _unavailable)
    app.add_error_handler(CoordinatorUnavailable, _unavailable)
    app.set_error_serializer(serialize_http_error)
