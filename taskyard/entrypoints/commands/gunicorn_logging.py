"""gunicorn's own log lines (`gunicorn.error`) in taskyard's format.

gunicorn installs a handler of its own on `gunicorn.error`; this logger class drops it and
lets the lines reach the root logger, which `taskyard.entrypoints.logs.configure_logging`
set up (text or JSON). Its access log stays off: the API writes one line per request.

With SO_REUSEPORT the master holds no socket (each worker binds its own), and gunicorn's
`Listening at:` line would name none: this logger names the bind instead.
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

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if msg.startswith("Listening at:") and args and not args[0]:
            binds = ",".join(self.cfg.bind)
            args = (f"{binds} (a socket in each worker, SO_REUSEPORT)", *args[1:])
        super().info(msg, *args, **kwargs)
