"""The web dashboard at `/ui`, served by `taskyard api` and `taskyard standalone`
(`docs/operations.md`, "The dashboard").

Server-rendered Jinja2 templates, charts drawn on the server as inline SVG, and one small
script of our own (`static/ui.js`) that refreshes each page's live part: no build step,
no JavaScript dependency, nothing fetched from another host, and a Content-Security-Policy
that allows only this origin's own files.

    UI_ROUTES       every dashboard route: template, resource factory, access
    UiGuard         middleware: CSRF, headers, HTML errors (`pages.py`); access itself is the
                    API's `Guard` (`api/access.py`), which takes the session cookie
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from taskyard.entrypoints.api.access import Access
from taskyard.entrypoints.ui.pages import (
    BulkAction,
    DeadGroupRetry,
    DeadLetters,
    JobAction,
    JobDetail,
    Jobs,
    Login,
    Logout,
    Overview,
    Page,
    QueueAction,
    Queues,
    Schedules,
    Static,
    Ui,
    UiGuard,
    Workers,
)


@attrs.frozen
class UiRoute:
    """A dashboard route: its template, how to build its page, and who may call it (no
    default, as for the API's routes)."""

    template: str
    make: Callable[[Ui], Page]
    access: Access


OPEN, PROTECTED = Access.OPEN, Access.PROTECTED

UI_ROUTES: tuple[UiRoute, ...] = (
    UiRoute("/ui", Overview, PROTECTED),
    UiRoute("/ui/jobs", Jobs, PROTECTED),
    UiRoute("/ui/jobs/bulk", BulkAction, PROTECTED),
    UiRoute("/ui/jobs/{job_id}", JobDetail, PROTECTED),
    UiRoute("/ui/jobs/{job_id}/retry", lambda ui: JobAction(ui, "retry"), PROTECTED),
    UiRoute("/ui/jobs/{job_id}/cancel", lambda ui: JobAction(ui, "cancel"), PROTECTED),
    UiRoute("/ui/queues", Queues, PROTECTED),
    UiRoute("/ui/queues/{name}/pause", lambda ui: QueueAction(ui, paused=True), PROTECTED),
    UiRoute("/ui/queues/{name}/resume", lambda ui: QueueAction(ui, paused=False), PROTECTED),
    UiRoute("/ui/workers", Workers, PROTECTED),
    UiRoute("/ui/schedules", Schedules, PROTECTED),
    UiRoute("/ui/dead", DeadLetters, PROTECTED),
    UiRoute("/ui/dead/retry", DeadGroupRetry, PROTECTED),
    UiRoute("/ui/login", Login, OPEN),
    UiRoute("/ui/logout", Logout, PROTECTED),
    UiRoute("/ui/static/{name}", Static, OPEN),
)
"""Every dashboard route. Open: only what a browser needs before signing in (the form and
the static files). Not in the OpenAPI document (HTML pages, not the JSON API);
`docs/api.md` lists them and a test holds that list and this one equal."""

__all__ = ["UI_ROUTES", "Page", "Ui", "UiGuard", "UiRoute"]
