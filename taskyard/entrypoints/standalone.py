"""The whole system in one process: the REST API, a scheduler and a worker pool, sharing
one store and one coordinator (in-process unless a Redis URL is given).

The API is served by a threaded WSGI server from the standard library, in this process:
gunicorn would fork, and forked processes cannot share an in-process coordinator or one
SQLite connection pool. It is meant for one machine (a laptop, a small service, tests),
not for the open internet: put the production topology (`taskyard api` under gunicorn)
behind a load balancer instead.

    system = Standalone(settings).start()     # what `taskyard standalone` does
    system.url                                 # http://127.0.0.1:8000
    system.stop()                              # graceful: API, then worker, then scheduler
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from taskyard.adapters.clock import SystemClock
from taskyard.domain.ports import Coordinator, JobStore
from taskyard.entrypoints import process
from taskyard.entrypoints.api import Services, create_app
from taskyard.entrypoints.app import App
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.runtime import SchedulerRuntime, WorkerRuntime

log = logging.getLogger("taskyard.standalone")

DATABASE_URL_DEFAULT = "sqlite:///taskyard.db"


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per connection; a connection left open never holds up a stop.

    `serve_forever` waits on the listening socket and on a wake-up socket, with no
    timeout: `shutdown()` wakes it, so a stop returns at once. (The standard library's loop
    polls instead, and a stop waited for the poll: up to 0.2 s of every Ctrl-C.)"""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before the base class binds: a bind that fails calls server_close().
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        super().__init__(*args, **kwargs)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until `shutdown()`; `poll_interval` is not used (nothing polls)."""
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    ready = selector.select()
                    if not self._stopping.is_set() and any(key.fileobj is self for key, _ in ready):
                        self._accept()
                    self.service_actions()
        finally:
            self._stopped.set()

    def _accept(self) -> None:
        """One connection, handed to a thread of its own (what `handle_request` does)."""
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        if not self.verify_request(request, client_address):
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def shutdown(self) -> None:
        """Stop `serve_forever` and wait until it has returned (at once: it is woken). A
        shutdown before serving began makes the serving return as soon as it starts."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        for end in (self._wake_r, self._wake_w):
            end.close()


class ThreadingWSGIServer6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class QuietHandler(WSGIRequestHandler):
    """The API writes its own line per request (with the request id); wsgiref's access
    lines to stderr are dropped."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


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
        be listened on) fails with `OSError` before any store is opened or created."""
        self.settings = settings
        self.app = app
        self._server: WSGIServer | None = self._listen()
        try:
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
        clock = SystemClock()
        url = settings.database_url or DATABASE_URL_DEFAULT
        self.database_url = url
        self._owned: list[object] = []
        if store is None:
            store = process.open_store(url, settings, clock)
            self._owned.append(store)
        if coordinator is None:
            coordinator = process.open_coordinator(settings, clock, default_memory=True)
            self._owned.append(coordinator)
        self.store = store
        self.coordinator = coordinator
        policy = process.builtin_policy(settings)
        self.registry = process.task_registry(app, policy)
        self.services = Services.build(
            store=store,
            coordinator=coordinator,
            clock=clock,
            builtins=policy,
            tokens=settings.api_tokens,
        )
        self.worker_id = process.process_id()
        self.worker: WorkerRuntime = process.worker_runtime(
            settings,
            store=store,
            coordinator=coordinator,
            registry=self.registry,
            worker_id=self.worker_id,
        )
        self.scheduler: SchedulerRuntime = process.scheduler_runtime(
            settings, store=store, coordinator=coordinator, scheduler_id=self.worker_id
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
        process.close_quietly(*self._owned)
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
        process.close_quietly(*self._owned)


__all__ = ["DATABASE_URL_DEFAULT", "Standalone", "ThreadingWSGIServer"]
