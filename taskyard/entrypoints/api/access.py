"""Who may call what: access is decided after routing, from the route that matched.

Every route is declared with its access where it is added (`ROUTES` in `app.py`):

    OPEN        anyone: the landing page, health, readiness, metrics, the OpenAPI document
    PROTECTED   a valid credential, whenever a credential is configured

The decision never looks at the path the client sent. The router has already turned it
into a route (stripping extra leading slashes, after the server decoded `%2F`), and the
`Guard` asks only which resource it found. So no spelling of a path reaches a protected
route without a credential. A resource that is routed but was never declared is
PROTECTED (deny by default), and a request that matches no route at all is refused like
a protected one (401) unless it carries a valid credential (then 404): without one, a
client cannot tell which paths exist.

A credential is anything that can look at a request and say whether it carries a valid
proof (`Credential.verify`). Today there is one, the bearer token of
`TASKYARD_API_TOKENS`. A second one (a dashboard's session cookie) is another
`Credential` in the list given to the `Guard`; the open pages a dashboard serves before
login are more `OPEN` routes. A refusal is raised as a 401 `Problem`; a handler that would
rather send a browser to a login page can tell the route from `req.uri_template` (the
template that matched, never the raw path).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import falcon

from taskyard.entrypoints.api.problems import Problem, render, serialize_http_error, unauthorized


class Access(enum.Enum):
    OPEN = "open"
    """Anyone may call it."""
    PROTECTED = "protected"
    """A valid credential is needed whenever one is configured."""


class Verdict(enum.Enum):
    ABSENT = "absent"
    """The request does not carry this credential."""
    VALID = "valid"
    INVALID = "invalid"
    """It carries one, and it is wrong."""


class Credential(Protocol):
    """One way for a request to prove it may call protected routes."""

    @property
    def configured(self) -> bool:
        """False when this kind of credential is switched off (it then checks nothing)."""
        ...

    def verify(self, req: falcon.Request) -> Verdict: ...


class BearerToken:
    """`Authorization: Bearer <token>` with one of the configured tokens (the scheme is
    case-insensitive). Compared in constant time with every token, always, so the time
    taken does not tell which one matched or how much of one did."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [token.encode() for token in tokens]

    @property
    def configured(self) -> bool:
        return bool(self._tokens)

    def verify(self, req: falcon.Request) -> Verdict:
        header = req.get_header("Authorization")
        if header is None:
            return Verdict.ABSENT
        scheme, _, given = header.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return Verdict.ABSENT
        return Verdict.VALID if self.matches(given) else Verdict.INVALID

    def matches(self, given: str) -> bool:
        """Whether `given` is one of the tokens (also what the dashboard's sign-in form
        checks)."""
        candidate = given.encode()
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(candidate, token)
        return matched


class Guard:
    """Falcon middleware that decides access in `process_resource`, after routing, from
    the resource the router found; also the handler of "no route matched"."""

    def __init__(self, credentials: Sequence[Credential]) -> None:
        self.credentials = tuple(credentials)
        self._declared: dict[int, tuple[object, Access]] = {}

    @property
    def enforced(self) -> bool:
        """Whether any credential is configured; without one, every route is open."""
        return any(credential.configured for credential in self.credentials)

    def declare(self, resource: object, access: Access) -> None:
        """Record the access of a resource about to be routed."""
        known = self._declared.get(id(resource))
        assert known is None or known[1] is access, f"{resource!r} declared twice, differently"
        self._declared[id(resource)] = (resource, access)

    def declared(self, resource: object) -> Access | None:
        """The access declared for `resource`, or None when nobody declared it."""
        known = self._declared.get(id(resource))
        return known[1] if known is not None and known[0] is resource else None

    def access_of(self, resource: object) -> Access:
        """Deny by default: what was not declared is protected."""
        declared = self.declared(resource)
        return Access.PROTECTED if declared is None else declared

    def refusal(self, req: falcon.Request) -> Problem | None:
        """The 401 for a request that needs a credential and carries no valid one."""
        if not self.enforced:
            return None
        verdicts = {c.verify(req) for c in self.credentials if c.configured}
        if Verdict.VALID in verdicts:
            return None
        return unauthorized(token_given=Verdict.INVALID in verdicts)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: Any
    ) -> None:
        if self.access_of(resource) is Access.OPEN:
            return
        problem = self.refusal(req)
        if problem is not None:
            raise problem

    def route_not_found(
        self, req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
    ) -> None:
        """No route matched: a 401 as for a protected route unless a valid credential came,
        so that the answer without one is the same for every path that is not open."""
        assert isinstance(ex, falcon.HTTPError)
        problem = self.refusal(req)
        if problem is not None:
            render(resp, problem)
            return
        resp.status = ex.status
        serialize_http_error(req, resp, ex)

    def install(self, app: falcon.App[falcon.Request, falcon.Response]) -> None:
        """Answer requests that match no route through `route_not_found`."""
        app.add_error_handler(falcon.HTTPRouteNotFound, self.route_not_found)


__all__ = ["Access", "BearerToken", "Credential", "Guard", "Verdict"]
