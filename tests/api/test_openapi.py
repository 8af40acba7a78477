"""The OpenAPI document and the real routes cannot drift apart.

Beyond these, every response the API tests receive is checked against the document
(`tests/api/conftest.py`, `check_against_openapi`).
"""

from __future__ import annotations

import re

from falcon.inspect import inspect_routes
from openapi_spec_validator import validate

from taskyard.entrypoints.api.access import Access
from taskyard.entrypoints.api.app import ROUTES, api_document
from taskyard.entrypoints.ui import UI_ROUTES
from tests.api.conftest import Api

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


UI_TEMPLATES = {route.template for route in UI_ROUTES}


def routed(api: Api, *, ui: bool = False) -> set[tuple[str, str]]:
    """(path template, method) of every responder Falcon routes, not its defaults: those of
    the JSON API, or (`ui`) those of the dashboard's HTML pages, which the OpenAPI document
    leaves out."""
    out = set()
    for route in inspect_routes(api.app):
        if (route.path in UI_TEMPLATES) != ui:
            continue
        for method in route.methods:
            if not method.internal:
                out.add((route.path, method.method.lower()))
    return out


def documented() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in api_document()["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_documented_and_every_documented_route_exists(api: Api) -> None:
    real, doc = routed(api), documented()
    assert real - doc == set(), "routes the OpenAPI document does not describe"
    assert doc - real == set(), "operations in the OpenAPI document that no route serves"
    assert real == API_MD_TABLE


def test_the_dashboard_routes_are_exactly_ui_routes_and_none_is_in_the_document(api: Api) -> None:
    """A route is either the JSON API's (documented above) or one of `UI_ROUTES`: the
    dashboard cannot hide an API route, and no page slips into the OpenAPI document."""
    pages = routed(api, ui=True)
    assert {path for path, _ in pages} == UI_TEMPLATES
    assert all(path.startswith("/ui") for path in UI_TEMPLATES)
    assert not UI_TEMPLATES & set(api_document()["paths"])


API_MD_TABLE = {
    ("/v1/jobs", "post"),
    ("/v1/jobs/batch", "post"),
    ("/v1/jobs/{job_id}", "get"),
    ("/v1/jobs", "get"),
    ("/v1/jobs/{job_id}", "patch"),
    ("/v1/jobs/{job_id}/cancel", "post"),
    ("/v1/jobs/{job_id}", "delete"),
    ("/v1/jobs/{job_id}/retry", "post"),
    ("/v1/jobs/{job_id}/attempts", "get"),
    ("/v1/jobs/retry", "post"),
    ("/v1/jobs/cancel", "post"),
    ("/v1/queues", "get"),
    ("/v1/queues/{name}", "get"),
    ("/v1/queues/{name}", "put"),
    ("/v1/queues/{name}/pause", "post"),
    ("/v1/queues/{name}/resume", "post"),
    ("/v1/tasks", "get"),
    ("/v1/schedules", "post"),
    ("/v1/schedules", "get"),
    ("/v1/schedules/{name}", "get"),
    ("/v1/schedules/{name}", "patch"),
    ("/v1/schedules/{name}", "delete"),
    ("/v1/schedules/{name}/pause", "post"),
    ("/v1/schedules/{name}/resume", "post"),
    ("/v1/workers", "get"),
    ("/v1/schedulers", "get"),
    ("/v1/stats", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
    ("/", "get"),
}
"""The endpoint table of api.md, operation by operation."""


def test_path_parameters_are_declared(api: Api) -> None:
    document = api_document()
    for path, item in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            declared = set()
            for given in operation.get("parameters", []):
                parameter = (
                    document["components"]["parameters"][given["$ref"].rsplit("/", 1)[1]]
                    if "$ref" in given
                    else given
                )
                if parameter["in"] == "path":
                    declared.add(parameter["name"])
            assert declared == names, (method, path)


def test_the_document_is_valid_openapi_3_1(api: Api) -> None:
    served = api.get("/openapi.json")
    assert served.status_code == 200
    assert served.json["openapi"] == "3.1.0"
    validate(served.json)


def test_the_document_says_open_exactly_where_the_routes_are_declared_open() -> None:
    document = api_document()
    assert document["security"] == [{"bearer": []}]
    access = {route.template: route.access for route in ROUTES}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            is_open = operation.get("security") == []
            assert is_open == (access[path] is Access.OPEN), (method, path)
            if not is_open:
                assert "401" in operation["responses"], (method, path)
