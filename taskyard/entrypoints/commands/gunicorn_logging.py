"""gunicorn's own log lines (`gunicorn.error`) in taskyard's format.

gunicorn installs a handler of its own on `gunicorn.error`; this logger class drops it and
lets the lines reach the root logger, which `taskyard.entrypoints.logs.configure_logging`
set up (text or JSON). Its access log stays off: the API writes one line per request.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger


class TaskyardGunicornLogger(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
