"""The web dashboard at `/ui`, served by `taskyard api` and `taskyard standalone`
(`docs/operations.md`, "The dashboard").

Server-rendered Jinja2 templates, charts drawn on the server as inline SVG, and one small
script of our own (`static/ui.js`) that refreshes each page's live part: no build step,
no JavaScript dependency, nothing fetched from another host, and a Content-Security-Policy
that allows only this origin's own files.

    UI_ROUTES                     every dashboard route (template, resource factory)
    ui_middleware(ui)             access, CSRF and headers (`pages.UiGuard`)
"""

from __future__ import annotations

from collections.abc import Callable

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
    Static,
    Ui,
    UiGuard,
    Workers,
)

UiRoute = tuple[str, Callable[[Ui], Page]]

UI_ROUTES: tuple[UiRoute, ...] = (
    ("/ui", Overview),
    ("/ui/jobs", Jobs),
    ("/ui/jobs/bulk", BulkAction),
    ("/ui/jobs/{job_id}", JobDetail),
    ("/ui/jobs/{job_id}/retry", lambda ui: JobAction(ui, "retry")),
    ("/ui/jobs/{job_id}/cancel", lambda ui: JobAction(ui, "cancel")),
    ("/ui/queues", Queues),
    ("/ui/queues/{name}/pause", lambda ui: QueueAction(ui, paused=True)),
    ("/ui/queues/{name}/resume", lambda ui: QueueAction(ui, paused=False)),
    ("/ui/workers", Workers),
    ("/ui/dead", DeadLetters),
    ("/ui/dead/retry", DeadGroupRetry),
    ("/ui/login", Login),
    ("/ui/logout", Logout),
    ("/ui/static/{name}", Static),
)
"""Every dashboard route. Not in the OpenAPI document (HTML pages, not the JSON API);
`docs/api.md` lists them and a test holds that list and this one equal."""

__all__ = ["UI_ROUTES", "Page", "Ui", "UiGuard"]
