"""Request middleware: the request id and the access line, the body limit. (Access is
`access.py`'s `Guard`.)"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

import falcon

from taskyard.entrypoints.api.body import BODY_BYTES_MAX
from taskyard.entrypoints.api.problems import too_large
from taskyard.entrypoints.logs import bind_log_context, unbind_log_context

log = logging.getLogger("taskyard.api")

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def new_request_id() -> str:
    return secrets.token_hex(16)


def request_id_of(header: str | None) -> str:
    """The client's request id when it is valid, else a new one."""
    if header is not None and REQUEST_ID.fullmatch(header):
        return header
    return new_request_id()


class RequestContext:
    """Gives every request an id (`req.context.request_id`): the client's `X-Request-ID`
    when valid, else a new one. Echoes it, puts it on every log line written while the
    request is handled, and ends with one access line per request."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        request_id = request_id_of(req.get_header(REQUEST_ID_HEADER))
        req.context.request_id = request_id
        req.context.started = time.perf_counter()
        req.context.log_token = bind_log_context(request_id=request_id)
        resp.set_header(REQUEST_ID_HEADER, request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        fields: dict[str, Any] = {
            "method": req.method,
            "path": req.path,
            "status": resp.status_code,
        }
        if started is not None:
            fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        for key in ("job_id", "job_count"):
            value = getattr(req.context, key, None)
            if value is not None:
                fields[key] = value
        log.info("request", extra=fields)
        token = getattr(req.context, "log_token", None)
        if token is not None:
            unbind_log_context(token)
            req.context.log_token = None


class BodyLimit:
    """Refuse a declared `Content-Length` over the route's limit before anything reads the
    body: `BODY_BYTES_MAX` (1 MiB) unless the resource says otherwise with a
    `body_bytes_max` attribute (a batch: 16 MiB). Bodies sent without a length are cut
    while read. Runs after routing and after the access check."""

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: Any
    ) -> None:
        length = req.content_length
        if length is None:
            return
        limit = body_limit_bytes(resource)
        if length > limit:
            raise too_large(limit)


def body_limit_bytes(resource: object) -> int:
    limit: int = getattr(resource, "body_bytes_max", BODY_BYTES_MAX)
    return limit
