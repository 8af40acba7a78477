"""The route walk: every protected route of `ROUTES` and of the dashboard's `UI_ROUTES`,
every method it has, every spelling of its path a hostile client might try, without a
token. Each must be a 401, and nothing may change in the store.

Used against the Falcon test client (tests/api), the standalone's threaded WSGI server and
gunicorn (tests/e2e), through a `Send` that puts the raw path on the wire as given
(http.client does not normalise paths; requests and urllib do).
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
from falcon.inspect import inspect_routes

from taskyard.entrypoints.api.access import Access
from taskyard.entrypoints.api.app import ROUTES
from taskyard.entrypoints.ui import UI_ROUTES

Send = Callable[[str, str, bytes | None, Mapping[str, str]], tuple[int, bytes]]
"""(method, raw path, body, headers) -> (status, body)."""


def leading_variants(path: str) -> list[str]:
    """Spellings of `path` that differ before its first segment: the issue's list and more.

    >>> leading_variants("/v1/jobs")[:4]
    ['//v1/jobs', '///v1/jobs', '/%2Fv1/jobs', '/%2fv1/jobs']
    """
    rest = path[1:]
    return [
        f"//{rest}",
        f"///{rest}",
        f"/%2F{rest}",
        f"/%2f{rest}",
        f"/%2F%2F{rest}",
        f"/%2f/{rest}",
        f"/./{rest}",
        f"/x/../{rest}",
        f"/%2E/{rest}",
        f"/x/%2e%2e/{rest}",
        f"/.%2F{rest}",
    ]


def inner_variants(path: str) -> list[str]:
    """Spellings that differ inside or after the path.

    >>> inner_variants("/v1/jobs")[:3]
    ['/v1//jobs', '/v1/./jobs', '/v1%2Fjobs']
    """
    first, _, tail = path[1:].partition("/")
    out = [f"/{first}//{tail}", f"/{first}/./{tail}", f"/{first}%2F{tail}", f"/{first}%2f{tail}"]
    out += [f"/{first}/x/../{tail}", f"/{first.upper()}/{tail}", f"{path}/", f"{path}/."]
    out += [f"{path}%00", f"{path};x", f"{path}%0A", f"/{first}\\{tail}"]
    return [variant for variant in out if variant != path] if tail else [f"{path}/", f"{path}%00"]


def variants(path: str) -> list[str]:
    """The path itself, then every other spelling."""
    return [path, *leading_variants(path), *inner_variants(path)]


BODIES: Mapping[tuple[str, str], Any] = {
    ("/v1/jobs", "POST"): {"task": "sleep"},
    ("/v1/jobs/batch", "POST"): {"jobs": [{"task": "sleep"}]},
    ("/v1/jobs/retry", "POST"): {"state": "cancelled"},
    ("/v1/jobs/cancel", "POST"): {"state": "queued"},
    ("/v1/jobs/{job_id}", "PATCH"): {"priority": 7},
    ("/v1/queues/{name}", "PUT"): {"concurrency_limit": 1, "retention_seconds": {"dead": 1}},
}
"""A body that would change the store if the request got through."""


def routed_methods() -> dict[str, list[str]]:
    """Each template of `ROUTES` with the methods its resource answers (no defaults)."""
    from tests.api.conftest import make_api

    out: dict[str, list[str]] = {}
    for info in inspect_routes(make_api().app):
        out[info.path] = sorted(m.method for m in info.methods if not m.internal)
    return out


def fill(template: str, values: Mapping[str, Sequence[str]]) -> list[str]:
    """`template` with each combination of values for its `{names}`."""
    names = re.findall(r"{(\w+)}", template)
    paths = []
    for chosen in itertools.product(*(values[name] for name in names)):
        path = template
        for name, value in zip(names, chosen, strict=True):
            path = path.replace("{" + name + "}", value)
        paths.append(path)
    return paths


@attrs.frozen
class Probe:
    method: str
    path: str
    body: bytes | None


def probes(values: Mapping[str, Sequence[str]]) -> Iterator[Probe]:
    """Every protected route, with each of its methods (and OPTIONS, which Falcon answers by
    default), each filled path and every spelling of it."""
    methods = routed_methods()
    for route in (*ROUTES, *UI_ROUTES):
        if route.access is not Access.PROTECTED:
            continue
        for method in [*methods[route.template], "OPTIONS"]:
            body = BODIES.get((route.template, method))
            raw = json.dumps(body).encode() if body is not None else None
            for path in fill(route.template, values):
                for spelled in variants(path):
                    yield Probe(method, spelled, raw)


def walk(send: Send, values: Mapping[str, Sequence[str]]) -> int:
    """Send every probe without a token; fail on any answer but a 401. Returns the count."""
    wrong: list[tuple[str, str, int]] = []
    count = 0
    for probe in probes(values):
        headers = {"Content-Type": "application/json"} if probe.body is not None else {}
        status, _ = send(probe.method, probe.path, probe.body, headers)
        count += 1
        if status != 401:
            wrong.append((probe.method, probe.path, status))
    assert not wrong, f"{len(wrong)} of {count} probes were not refused with 401: {wrong[:20]}"
    return count


def http_sender(host: str, port: int, *, timeout_s: float = 10.0) -> Send:
    """A `Send` over a fresh connection per request, with the path exactly as given."""

    def send(
        method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    return send


def snapshot(send: Send, token: str) -> tuple[Any, Any, Any]:
    """Every job (as listed), every queue, and the settings of the queues the walk aims
    at, read with the token: what a walk must not change."""
    auth = {"Authorization": f"Bearer {token}"}
    status, jobs = send("GET", "/v1/jobs?limit=1000", None, auth)
    assert status == 200, jobs
    status, queues = send("GET", "/v1/queues", None, auth)
    assert status == 200, queues
    listed = json.loads(queues)
    for queue in listed["queues"]:
        queue.pop("oldest_queued_age_seconds")  # grows by itself
    settings = []
    for name in ("walk-held", "walk-free"):
        status, one = send("GET", f"/v1/queues/{name}", None, auth)
        assert status == 200, one
        settings.append(json.loads(one))  # the queue's retention is not in the listing
    return json.loads(jobs), listed, settings


def prepare(send: Send, token: str) -> dict[str, list[str]]:
    """Jobs and queues to aim at: a queued job in a paused queue (a bypassed cancel, patch,
    bulk cancel or resume would change it), a cancelled one (a retry would), and a queue
    that is not paused (a pause would show). Returns the values for the path parameters."""
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def ok(method: str, path: str, body: Any = None) -> Any:
        raw = json.dumps(body).encode() if body is not None else None
        status, answer = send(method, path, raw, auth)
        assert 200 <= status < 300, (method, path, status, answer)
        return json.loads(answer)

    ok("POST", "/v1/queues/walk-held/pause")
    held = ok("POST", "/v1/jobs", {"task": "sleep", "queue": "walk-held"})
    gone = ok("POST", "/v1/jobs", {"task": "sleep", "queue": "walk-held"})
    ok("POST", f"/v1/jobs/{gone['id']}/cancel")
    return {"job_id": [held["id"], gone["id"]], "name": ["walk-held", "walk-free"]}
