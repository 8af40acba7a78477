"""Request middleware: the request id and the access line, bearer tokens, the body limit."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

import falcon

from taskyard.entrypoints.api.body import BATCH_BODY_BYTES_MAX, BODY_BYTES_MAX
from taskyard.entrypoints.api.problems import too_large, unauthorized
from taskyard.entrypoints.logs import bind_log_context, unbind_log_context

log = logging.getLogger("taskyard.api")

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json"})
PROTECTED_PREFIX = "/v1/"
BATCH_PATH = "/v1/jobs/batch"


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


class BearerAuth:
    """When tokens are configured, every `/v1/` request needs `Authorization: Bearer <t>`
    with one of them. The landing page, health, readiness, metrics and the OpenAPI
    document stay open."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._tokens or not _protected(req.path):
            return
        header = req.get_header("Authorization") or ""
        scheme, _, given = header.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise unauthorized(token_given=False)
        candidate = given.encode()
        # Compare with every token, always, so the time taken does not tell which matched.
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(candidate, token)
        if not matched:
            raise unauthorized(token_given=True)


def _protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIX) or path == PROTECTED_PREFIX.rstrip("/")


class BodyLimit:
    """Refuse a declared `Content-Length` over the limit before anything reads the body
    (1 MiB; 16 MiB for a batch). Bodies sent without a length are cut while read."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length
        if length is None:
            return
        limit = body_limit_bytes(req.path)
        if length > limit:
            raise too_large(limit)


def body_limit_bytes(path: str) -> int:
    return BATCH_BODY_BYTES_MAX if path == BATCH_PATH else BODY_BYTES_MAX
