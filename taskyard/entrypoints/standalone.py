"""The whole system in one process: the REST API, a scheduler and a worker pool, sharing
one store and one coordinator (in-process unless a Redis URL is given).

The API is served by a threaded WSGI server from the standard library, in this process
(`wsgiserver.py`: a deep listen backlog, bodies only with a Content-Length, timeouts):
gunicorn would fork, and forked processes cannot share an in-process coordinator or one
SQLite connection pool. It is meant for one machine (a laptop, a small service, tests),
not for the open internet: put the production topology (`taskyard api` under gunicorn)
behind a load balancer instead.

    system = Standalone(settings).start()     # what `taskyard standalone` does
    system.url                                 # http://127.0.0.1:8000
    system.stop()                              # graceful: API, then worker, then scheduler
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

import attrs

from taskyard.domain.ports import Coordinator, JobStore
from taskyard.entrypoints import process
from taskyard.entrypoints.api import create_app
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.exposure import check_exposure
from taskyard.entrypoints.library import App
from taskyard.entrypoints.runtime import SchedulerRuntime, WorkerRuntime
from taskyard.entrypoints.wsgiserver import QuietHandler, ThreadingWSGIServer, ThreadingWSGIServer6

log = logging.getLogger("taskyard.standalone")

DATABASE_URL_DEFAULT = "sqlite:///taskyard.db"
REDIS_URL_DEFAULT = "memory://"


class Standalone:
    """API + scheduler + worker pool over one store and coordinator."""

    def __init__(
        self,
        settings: Settings,
        *,
        app: App | None = None,
        store: JobStore | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        """Adapters come from `settings` unless given (tests hand in their own).

        The listening socket is bound first, so that a port in use (or a host that cannot
        be listened on) fails with `OSError` before any store is opened or created, and an
        address other machines can reach without tokens with `ConfigError`
        (`exposure.py`)."""
        self.settings = settings
        self.app = app
        self._server: WSGIServer | None = self._listen()
        try:
            check_exposure(
                settings,
                host=settings.host,
                listening=f"{settings.host} ({settings.source('host')})",
            )
            self._build(settings, app=app, store=store, coordinator=coordinator)
        except BaseException:
            self._server.server_close()
            self._server = None
            raise
        self._serving: threading.Thread | None = None

    def _listen(self) -> WSGIServer:
        host = self.settings.host
        server_class = ThreadingWSGIServer6 if ":" in host else ThreadingWSGIServer
        return server_class((host, self.settings.port), QuietHandler)

    def _build(
        self,
        settings: Settings,
        *,
        app: App | None,
        store: JobStore | None,
        coordinator: Coordinator | None,
    ) -> None:
        # One process: the store defaults to a SQLite file, the coordinator to one inside
        # this process.
        self.database_url = settings.database_url or DATABASE_URL_DEFAULT
        settings = attrs.evolve(
            settings,
            database_url=self.database_url,
            redis_url=settings.redis_url or REDIS_URL_DEFAULT,
        )
        given: dict[str, Any] = {}
        if store is not None:
            given["store"] = store
        if coordinator is not None:
            given["coordinator"] = coordinator
        self.system = bootstrap(settings, **given)
        self.store = self.system.store
        self.coordinator = self.system.coordinator
        self.registry = self.system.task_registry(app.tasks if app is not None else None)
        self.services = self.system.services()
        self.worker_id = process.process_id()
        self.worker: WorkerRuntime = self.system.worker_runtime(
            self.registry, worker_id=self.worker_id, hooks=app.hooks if app is not None else None
        )
        self.scheduler: SchedulerRuntime = self.system.scheduler_runtime(
            scheduler_id=self.worker_id
        )

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return process.listen_url(self.settings.host, self._server.server_port)

    @property
    def client_url(self) -> str:
        """The URL the client commands on this machine use to reach it."""
        assert self._server is not None, "not started"
        return process.client_url(self.settings.host, self._server.server_port)

    def start(self) -> Standalone:
        """Start the scheduler and the worker, then serve on the socket bound at
        construction."""
        assert self._serving is None, "starts once"
        server = self._server
        assert server is not None, "closed"
        server.set_app(create_app(self.services))
        self.scheduler.start()
        self.worker.start()
        self._serving = threading.Thread(
            target=server.serve_forever, name="taskyard-http", daemon=True
        )
        self._serving.start()
        return self

    def stop(self, *, grace_s: float | None = None) -> int:
        """Stop taking requests, let running jobs finish within the grace period and hand
        back the rest, stop the scheduler (resigning), close what was opened. Returns how
        many handlers ignored the stop and still run."""
        self._close_server()
        grace = self.settings.grace_period_s if grace_s is None else grace_s
        stubborn = process.stop_worker(self.worker, grace_s=grace)
        self.scheduler.stop()
        process.close_quietly(self.system)
        return stubborn

    def _close_server(self) -> None:
        if self._server is None:
            return
        if self._serving is not None:
            self._server.shutdown()  # wakes serve_forever and waits for it to return
        self._server.server_close()
        self._server = None

    def kill(self) -> None:
        """Stop at once, as a crash would (tests): nothing handed back, no resignation."""
        self._close_server()
        self.worker.kill()
        self.scheduler.kill()
        process.close_quietly(self.system)


__all__ = ["DATABASE_URL_DEFAULT", "REDIS_URL_DEFAULT", "Standalone", "ThreadingWSGIServer"]
