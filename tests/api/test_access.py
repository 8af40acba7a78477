"""Access is decided by the route that matched, deny by default (`access.py`).

The same walk runs against real servers in tests/e2e/test_route_walk.py."""

from __future__ import annotations

from collections.abc import Mapping

import falcon
import falcon.testing
from falcon.inspect import inspect_routes

from taskyard.entrypoints.api.access import Access, BearerToken, Guard, Verdict
from taskyard.entrypoints.api.app import ROUTES
from tests.api.conftest import TOKENS, Api, assert_problem, make_api
from tests.routewalk import Send, prepare, snapshot, walk

OPEN_ROUTES = {"/", "/healthz", "/readyz", "/metrics", "/openapi.json"}
"""Opening a route is a decision: it is written here as well as in ROUTES."""


def client_sender(api: Api) -> Send:
    def send(
        method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        result = api.client.simulate_request(method, path, body=body, headers=dict(headers))
        return result.status_code, result.content

    return send


def test_every_protected_route_refuses_every_spelling_of_its_path_and_stores_nothing() -> None:
    secured = make_api(tokens=TOKENS)
    send = client_sender(secured)
    values = prepare(send, TOKENS[0])
    before = snapshot(send, TOKENS[0])
    count = walk(send, values)
    assert count > 500
    assert snapshot(send, TOKENS[0]) == before


def test_the_open_routes_are_exactly_the_five_and_every_route_declares_its_access() -> None:
    assert {r.template for r in ROUTES if r.access is Access.OPEN} == OPEN_ROUTES
    templates = [r.template for r in ROUTES]
    assert len(templates) == len(set(templates)), "a template declared twice"


def test_every_routed_resource_was_declared_with_its_access() -> None:
    """A route added to the app some other way than through ROUTES is caught here (and
    would be protected meanwhile: see the next test)."""
    api = make_api(tokens=TOKENS)
    guard = _guard(api.app)
    for info in inspect_routes(api.app):
        found = api.app._router.find(info.path.replace("{", "").replace("}", ""))
        assert found is not None, info.path
        resource = found[0]
        assert guard.declared(resource) is not None, f"{info.path} has no declared access"


def _guard(app: falcon.App[falcon.Request, falcon.Response]) -> Guard:
    [guard] = [m for m in app._unprepared_middleware if isinstance(m, Guard)]
    return guard


class _Undeclared:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"secret": True}


def test_a_route_nobody_declared_needs_the_token() -> None:
    api = make_api(tokens=TOKENS)
    api.app.add_route("/extra", _Undeclared())
    assert_problem(api.client.simulate_get("/extra"), 401)
    assert_problem(api.client.simulate_get("//extra"), 401)
    allowed = api.client.simulate_get("/extra", headers={"Authorization": f"Bearer {TOKENS[0]}"})
    assert allowed.status_code == 200 and allowed.json == {"secret": True}


def test_no_route_is_a_401_without_a_token_and_a_404_with_one() -> None:
    secured = make_api(tokens=TOKENS)
    for path in ("/nothing", "/v1/nothing", "/./healthz", "/v1/jobs/", "/x/../v1/jobs"):
        assert_problem(secured.call("GET", path, token=""), 401)
        wrong = secured.call("GET", path, token="not-a-token")
        assert wrong.headers["www-authenticate"].endswith('error="invalid_token"')
        assert_problem(secured.call("GET", path), 404)


def test_without_tokens_the_api_is_open_and_an_unknown_path_is_a_404(api: Api) -> None:
    assert api.get("/v1/jobs").status_code == 200
    assert_problem(api.get("/v1/nothing"), 404)


def test_the_open_routes_answer_every_spelling_that_routes_to_them() -> None:
    secured = make_api(tokens=TOKENS)
    for path in ("//healthz", "/%2Fhealthz", "///metrics"):
        assert secured.client.simulate_get(path).status_code == 200, path


def test_the_body_limit_is_the_route_s_and_comes_after_the_token() -> None:
    secured = make_api(tokens=TOKENS)
    big = {"Content-Length": str(2 * 1024 * 1024), "Content-Type": "application/json"}
    # No token: a 401 whatever the body, before its length is looked at.
    assert_problem(secured.client.simulate_post("//v1/jobs/batch", headers=big), 401)
    auth = {**big, "Authorization": f"Bearer {TOKENS[0]}"}
    assert_problem(secured.client.simulate_post("//v1/jobs", headers=auth), 413)
    # A batch may be 16 MiB, however its path is spelled: 2 MiB is read (and is not JSON).
    result = secured.client.simulate_post("//v1/jobs/batch", headers=auth, body=b"x" * 2**21)
    assert_problem(result, 400)


def test_a_bearer_token_is_absent_valid_or_invalid() -> None:
    token = BearerToken(["abc"])

    def verdict(header: str | None) -> Verdict:
        headers = {} if header is None else {"Authorization": header}
        return token.verify(falcon.testing.create_req(headers=headers))

    assert verdict(None) is Verdict.ABSENT
    assert verdict("Basic abc") is Verdict.ABSENT
    assert verdict("Bearer") is Verdict.ABSENT
    assert verdict("Bearer abc") is Verdict.VALID
    assert verdict("bearer  abc ") is Verdict.VALID
    assert verdict("Bearer abcd") is Verdict.INVALID
    assert not BearerToken([]).configured
