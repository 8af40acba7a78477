"""The REST API (`api.md`): a Falcon WSGI app served by gunicorn.

    create_app(services)   the app on services the composition root built
                           (`bootstrap(settings).services()`: tests, standalone)
    get_app()              the app on adapters built from settings (for any WSGI server:
                           gunicorn 'taskyard.entrypoints.api:get_app()')

`taskyard api` serves `get_app` under gunicorn (`taskyard.entrypoints.commands.api`).
"""

from __future__ import annotations

import falcon

from taskyard.entrypoints import config
from taskyard.entrypoints.api.app import ROUTES, create_app
from taskyard.entrypoints.api.services import Services
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.logs import configure_logging


def get_app(
    settings: config.Settings | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """The app for `settings`. Without them (another WSGI server calls this), the settings
    come from the environment and `taskyard.toml`, and logging is set up from them too."""
    if settings is None:
        settings = config.resolve(None, config.API_SETTINGS)
        configure_logging(log_format=settings.log_format, level=settings.log_level)
    return create_app(bootstrap(settings).services())


__all__ = ["ROUTES", "Services", "create_app", "get_app"]
