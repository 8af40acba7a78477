"""The API on the in-memory adapters and a manual clock, through Falcon's test client.

Every response a test receives through `Api.call` is also checked against the OpenAPI
document: its status must be documented for the route and method, and its body must
match the schema documented for that status. So the document cannot drift from what the
API answers, as far as the tests reach.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import attrs
import falcon
import falcon.testing
import jsonschema
import pytest

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.model import Job
from taskyard.domain.ports import Coordinator, JobQuery, JobStore
from taskyard.entrypoints.api import Services, create_app
from taskyard.entrypoints.api.app import api_document
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings

START = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
TOKENS = ("s3cret-token", "second.token")

_DOCUMENT = api_document()
_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _follow(node: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str] | None]:
    """Resolve a `$ref` to a component; returns the node and its path when it moved."""
    ref = node.get("$ref")
    if ref is None:
        return node, None
    assert ref.startswith("#/"), ref
    parts = ref[2:].split("/")
    target: Any = _DOCUMENT
    for part in parts:
        target = target[part]
    return target, parts


def check_against_openapi(
    app: falcon.App[falcon.Request, falcon.Response], method: str, path: str, result: Any
) -> None:
    found = app._router.find(path)
    if found is None or result.status_code == 405:
        # No route (or no such method on it): Falcon's own 404/405, or a 401 first.
        assert result.status_code in (401, 404, 405), (path, result.status_code)
        return
    template = found[3]
    operation = _DOCUMENT["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in the OpenAPI document"
    status = str(result.status_code)
    assert status in operation["responses"], (
        f"{method} {template} answered {status}, which the OpenAPI document does not list"
    )
    response, moved = _follow(operation["responses"][status])
    base = moved or ["paths", template, method.lower(), "responses", status]
    content_type = (result.headers.get("content-type") or "").split(";")[0]
    assert content_type in response["content"], (method, template, status, content_type)
    for header in ("X-Request-ID", "Location", "Retry-After", "WWW-Authenticate"):
        if header in response.get("headers", {}):
            assert result.headers.get(header) is not None, (method, template, status, header)
    if content_type.endswith("json") and template != "/openapi.json":
        pointer = _pointer(*base, "content", content_type, "schema")
        validator = _VALIDATORS.get(pointer)
        if validator is None:
            # The document itself is the root, so its "#/components/..." refs resolve.
            schema = {"$ref": pointer, "components": _DOCUMENT["components"]}
            schema["paths"] = _DOCUMENT["paths"]
            validator = jsonschema.Draft202012Validator(schema)
            _VALIDATORS[pointer] = validator
        validator.validate(result.json)


@attrs.define
class Api:
    app: falcon.App[falcon.Request, falcon.Response]
    client: falcon.testing.TestClient
    store: InMemoryJobStore
    coordinator: InMemoryCoordinator
    clock: ManualClock
    services: Services
    token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
        content_type: str | None = "application/json",
    ) -> falcon.testing.Result:
        sent: dict[str, str] = {}
        if json_body is not None:
            body = json.dumps(json_body)
        if body is not None and content_type is not None:
            sent["Content-Type"] = content_type
        bearer = token if token is not None else self.token
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        sent.update(headers or {})
        # The query is sent as the bytes a client would put on the wire, percent-encoded;
        # a lone surrogate goes out as the invalid UTF-8 a hostile client can send.
        query = urlencode(params or {}, doseq=True, encoding="utf-8", errors="surrogatepass")
        result = self.client.simulate_request(
            method, path, body=body, headers=sent, query_string=query or None
        )
        check_against_openapi(self.app, method, path, result)
        return result

    def get(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> falcon.testing.Result:
        return self.call("POST", path, json_body=json_body, **kwargs)

    def submit(self, **fields: Any) -> dict[str, Any]:
        """Submit a job (a sleep of 0 by default) and return it; the test fails otherwise."""
        fields.setdefault("task", "sleep")
        result = self.post("/v1/jobs", fields)
        assert result.status_code == 201, result.text
        job: dict[str, Any] = result.json
        return job

    def stored(self) -> list[Job]:
        return list(self.store.list_jobs(JobQuery(limit=1000)).jobs)


def make_api(
    *,
    tokens: tuple[str, ...] = (),
    builtins: BuiltinPolicy | None = None,
    wrap_store: Callable[[InMemoryJobStore], JobStore] | None = None,
    wrap_coordinator: Callable[[InMemoryCoordinator], Coordinator] | None = None,
    with_coordinator: bool = True,
    unknown_task: str = "warn",
) -> Api:
    """The API on a fresh in-memory store and coordinator with a manual clock, wired by
    the composition root; `wrap_store` and `wrap_coordinator` put a wrapper (one that can
    be disconnected) between the API and them."""
    clock = ManualClock(START)
    adapters = bootstrap(Settings(database_url="memory://", redis_url="memory://"), clock=clock)
    memory, coordinator = adapters.store, adapters.coordinator
    assert isinstance(memory, InMemoryJobStore)
    assert isinstance(coordinator, InMemoryCoordinator)
    system = bootstrap(
        Settings(api_tokens=tokens, unknown_task=unknown_task),
        store=wrap_store(memory) if wrap_store is not None else memory,
        coordinator=(
            (wrap_coordinator(coordinator) if wrap_coordinator else coordinator)
            if with_coordinator
            else None
        ),
        clock=clock,
        rng=random.Random(7),
        builtins=builtins or BuiltinPolicy(http_allowed_hosts=frozenset({"127.0.0.1:9000"})),
    )
    services = system.services()
    app = create_app(services)
    return Api(
        app=app,
        client=falcon.testing.TestClient(app),
        store=memory,
        coordinator=coordinator,
        clock=clock,
        services=services,
        token=tokens[0] if tokens else None,
    )


@pytest.fixture
def api() -> Api:
    return make_api()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that call `configure_logging`: the root logger is put back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def assert_problem(result: falcon.testing.Result, status: int, *fields: str) -> dict[str, Any]:
    """A problem document with this status, naming (at least) these fields."""
    assert result.status_code == status, (result.status_code, result.text)
    assert result.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = result.json
    assert doc["status"] == status
    assert doc["type"].startswith("urn:taskyard:problem:")
    assert doc["title"] and doc["detail"]
    named = {e["field"] for e in doc.get("errors", [])}
    assert set(fields) <= named, (fields, doc)
    return doc
