"""`create_app(services)`: the Falcon WSGI app. Nothing is connected here; the services
come built (see `taskyard.entrypoints.bootstrap.System.services`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import falcon

from taskyard.entrypoints.api import jobs, schedules, system
from taskyard.entrypoints.api.access import Access, BearerToken, Credential, Guard
from taskyard.entrypoints.api.middleware import BodyLimit, RequestContext
from taskyard.entrypoints.api.openapi import openapi_document
from taskyard.entrypoints.api.problems import register_error_handlers
from taskyard.entrypoints.api.services import Services
from taskyard.entrypoints.ui.session import SessionCookie, SessionKeys


@attrs.frozen
class Route:
    """A path template, how to build its resource, and who may call it. The access has no
    default: a route cannot be added without deciding it (`access.py`)."""

    template: str
    make: Callable[[Services], object]
    access: Access


OPEN, PROTECTED = Access.OPEN, Access.PROTECTED

ROUTES: tuple[Route, ...] = (
    Route("/", system.Index, OPEN),
    Route("/healthz", lambda services: system.Health(), OPEN),
    Route("/readyz", system.Ready, OPEN),
    Route("/metrics", system.Metrics, OPEN),
    Route("/openapi.json", lambda services: system.OpenApi(api_document()), OPEN),
    Route("/v1/jobs", jobs.Jobs, PROTECTED),
    Route("/v1/jobs/batch", jobs.Batch, PROTECTED),
    Route("/v1/jobs/retry", jobs.BulkRetry, PROTECTED),
    Route("/v1/jobs/cancel", jobs.BulkCancel, PROTECTED),
    Route("/v1/jobs/{job_id}", jobs.OneJob, PROTECTED),
    Route("/v1/jobs/{job_id}/cancel", jobs.Cancel, PROTECTED),
    Route("/v1/jobs/{job_id}/retry", jobs.Retry, PROTECTED),
    Route("/v1/jobs/{job_id}/attempts", jobs.Attempts, PROTECTED),
    Route("/v1/queues", system.Queues, PROTECTED),
    Route("/v1/queues/{name}", system.OneQueue, PROTECTED),
    Route("/v1/queues/{name}/pause", system.PauseQueue, PROTECTED),
    Route("/v1/queues/{name}/resume", system.ResumeQueue, PROTECTED),
    Route("/v1/tasks", system.Tasks, PROTECTED),
    Route("/v1/schedules", schedules.Schedules, PROTECTED),
    Route("/v1/schedules/{name}", schedules.OneSchedule, PROTECTED),
    Route("/v1/schedules/{name}/pause", schedules.PauseSchedule, PROTECTED),
    Route("/v1/schedules/{name}/resume", schedules.ResumeSchedule, PROTECTED),
    Route("/v1/workers", system.Workers, PROTECTED),
    Route("/v1/schedulers", system.Schedulers, PROTECTED),
    Route("/v1/stats", system.StatsResource, PROTECTED),
)
"""Every route of the JSON API, with its access: the open ones are exactly the five above.
The OpenAPI document (`openapi.py`) describes each; tests hold them equal. The dashboard's
routes are `UI_ROUTES` (`taskyard/entrypoints/ui/__init__.py`), declared the same way."""


def api_document() -> dict[str, Any]:
    """The OpenAPI document of `ROUTES` (each operation open or protected as its route)."""
    return openapi_document({route.template: route.access for route in ROUTES})


def credentials(services: Services) -> list[Credential]:
    """The ways a request may prove itself on a protected route: a bearer token (API
    clients), or the dashboard's session cookie (a browser signed in at `/ui/login`; the
    cookie's path is `/ui`, so browsers send it nowhere else)."""
    return [
        BearerToken(services.tokens),
        SessionCookie(SessionKeys(services.tokens), services.client.clock),
    ]


def create_app(services: Services) -> falcon.App[falcon.Request, falcon.Response]:
    # The dashboard builds on this package (its query parsing, problems, services), so it
    # is imported here rather than at the top, whichever of the two is imported first.
    from taskyard.entrypoints.ui import UI_ROUTES, Ui, UiGuard

    guard = Guard(credentials(services))
    ui = Ui(services)
    # Access first, then the body limit: both after routing, from the route that matched;
    # then the dashboard's own rules for its pages (CSRF, headers, HTML errors).
    middleware: list[Any] = [RequestContext(), guard, BodyLimit(), UiGuard(ui, guard)]
    app = falcon.App(middleware=middleware, cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.secure_cookies_by_default = True
    register_error_handlers(app)
    guard.install(app)
    for route in ROUTES:
        resource = route.make(services)
        guard.declare(resource, route.access)
        app.add_route(route.template, resource)
    for page in UI_ROUTES:
        resource = page.make(ui)
        guard.declare(resource, page.access)
        app.add_route(page.template, resource)
    return app
