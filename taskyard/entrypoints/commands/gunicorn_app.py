"""The gunicorn application that serves the API: options from our settings, not from
gunicorn's own command line or config files."""

from __future__ import annotations

from typing import Any

import falcon
from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError

from taskyard.entrypoints.config import ConfigError, Settings


class ApiServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__(prog="taskyard api")

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> falcon.App[falcon.Request, falcon.Response]:
        """Called in each worker after the fork: the adapters are built there."""
        from taskyard.entrypoints.api import get_app

        try:
            return get_app(self.settings)
        except ConfigError as exc:
            # gunicorn prints this one line, and the master exits with APP_LOAD_ERROR.
            raise AppImportError(f"taskyard: {exc}") from None
