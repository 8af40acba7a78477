"""`create_app(services)`: the Falcon WSGI app. Nothing is connected here; the services
come built (see `taskyard.entrypoints.api.services.build_services`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from taskyard.entrypoints.api import jobs, system
from taskyard.entrypoints.api.middleware import BearerAuth, BodyLimit, RequestContext
from taskyard.entrypoints.api.problems import register_error_handlers
from taskyard.entrypoints.api.services import Services

Route = tuple[str, Callable[[Services], object]]

ROUTES: tuple[Route, ...] = (
    ("/", system.Index),
    ("/healthz", lambda services: system.Health()),
    ("/readyz", system.Ready),
    ("/metrics", system.Metrics),
    ("/openapi.json", lambda services: system.OpenApi()),
    ("/v1/jobs", jobs.Jobs),
    ("/v1/jobs/batch", jobs.Batch),
    ("/v1/jobs/retry", jobs.BulkRetry),
    ("/v1/jobs/cancel", jobs.BulkCancel),
    ("/v1/jobs/{job_id}", jobs.OneJob),
    ("/v1/jobs/{job_id}/cancel", jobs.Cancel),
    ("/v1/jobs/{job_id}/retry", jobs.Retry),
    ("/v1/jobs/{job_id}/attempts", jobs.Attempts),
    ("/v1/queues", system.Queues),
    ("/v1/queues/{name}/pause", system.PauseQueue),
    ("/v1/queues/{name}/resume", system.ResumeQueue),
    ("/v1/workers", system.Workers),
    ("/v1/schedulers", system.Schedulers),
    ("/v1/stats", system.StatsResource),
)
"""Every route of the JSON API (the dashboard's are `UI_ROUTES`). The OpenAPI document
(`openapi.py`) describes each; a test holds them equal."""


def create_app(services: Services) -> falcon.App[falcon.Request, falcon.Response]:
    # The dashboard builds on this package (its query parsing, problems, services), so it
    # is imported here rather than at the top, whichever of the two is imported first.
    from taskyard.entrypoints.ui import UI_ROUTES, Ui, UiGuard

    ui = Ui(services)
    middleware: list[Any] = [
        RequestContext(),
        BearerAuth(services.tokens),
        BodyLimit(),
        UiGuard(ui),
    ]
    app = falcon.App(middleware=middleware, cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.secure_cookies_by_default = True
    register_error_handlers(app)
    for template, make in ROUTES:
        app.add_route(template, make(services))
    for template, make_page in UI_ROUTES:
        app.add_route(template, make_page(ui))
    return app
