"""The standalone's HTTP server: the standard library's WSGI server, one thread per
connection, made fit to face a burst and a hostile client.

- **Backlog**: the listen queue holds `LISTEN_BACKLOG` connections (the standard library's
  default of 5 dropped connections in a burst of 200; the kernel caps it at
  `net.core.somaxconn`).
- **Framing**: a request body must come with a `Content-Length`. A request with
  `Transfer-Encoding` (a chunked body) is refused at once with 411 Length Required, as is
  one with two different `Content-Length`s (400): the server cannot read chunked bodies,
  and the handling thread would otherwise wait for an end of body that never comes.
  (`taskyard api`, under gunicorn, reads chunked bodies.)
- **Slow clients**: every read and write on a connection gives up after
  `SOCKET_TIMEOUT_S` without progress.
- **Lingering close**: after answering, the server stops sending and then reads what the
  client still sends (an unread body: a refused chunked upload, a 413, a 401) for up to
  `LINGER_S` or `LINGER_BYTES`, so that closing does not reset the connection before the
  client has read the answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import socketserver
import sys
import threading
import time
from email.message import Message
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from taskyard.entrypoints.api.body import BATCH_BODY_BYTES_MAX
from taskyard.entrypoints.api.problems import PROBLEM_JSON, problem_document

log = logging.getLogger("taskyard.standalone")

LISTEN_BACKLOG = 1024
SOCKET_TIMEOUT_S = 30.0
LINGER_S = 2.0
LINGER_BYTES = BATCH_BODY_BYTES_MAX


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per connection; a connection left open never holds up a stop.

    `serve_forever` waits on the listening socket and on a wake-up socket, with no
    timeout: `shutdown()` wakes it, so a stop returns at once. (The standard library's loop
    polls instead, and a stop waited for the poll: up to 0.2 s of every Ctrl-C.)"""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out, reset or went away is routine (the standard library
        would print a traceback to stderr); anything else is logged as unexpected."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("connection from %s ended: %r", client_address, error)
        else:
            log.error("the HTTP server failed on a connection", exc_info=error)

    def shutdown_request(self, request: Any) -> None:
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the client went away first
        else:
            _drain(request)
        self.close_request(request)


class ThreadingWSGIServer6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def _drain(sock: socket.socket) -> None:
    """Read and drop what the client still sends, until it closes or the bounds run out."""
    deadline = time.monotonic() + LINGER_S
    left = LINGER_BYTES
    try:
        while left > 0:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return
            sock.settimeout(remaining_s)
            data = sock.recv(min(left, 64 * 1024))
            if not data:
                return
            left -= len(data)
    except OSError:
        return


def framing_problem(headers: Message) -> tuple[int, str, str, str] | None:
    """(status, kind, title, detail) when a request's body cannot be delimited, else None.

    >>> from email.message import Message
    >>> chunked = Message(); chunked["Transfer-Encoding"] = "chunked"
    >>> framing_problem(chunked)[0]
    411
    >>> framing_problem(Message()) is None
    True
    """
    if headers.get_all("Transfer-Encoding"):
        return (
            411,
            "length-required",
            "Length Required",
            "this server reads a body only with a Content-Length (no Transfer-Encoding)",
        )
    lengths = {value.strip() for value in headers.get_all("Content-Length") or ()}
    if len(lengths) > 1:
        return (400, "bad-request", "Bad Request", "the request has two Content-Lengths")
    return None


class QuietHandler(WSGIRequestHandler):
    """Refuses bodies it cannot delimit before the app sees the request. The API writes its
    own line per request (with the request id); wsgiref's access lines are dropped."""

    timeout = SOCKET_TIMEOUT_S

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = framing_problem(self.headers)
        if problem is None:
            return True
        status, kind, title, detail = problem
        log.info(
            "request refused by the server",
            extra={"method": self.command, "path": self.path, "status": status},
        )
        body = json.dumps(
            problem_document(status=status, kind=kind, title=title, detail=detail)
        ).encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", PROBLEM_JSON)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        return False

    def log_message(self, format: str, *args: Any) -> None:
        pass


__all__ = ["LISTEN_BACKLOG", "QuietHandler", "ThreadingWSGIServer", "ThreadingWSGIServer6"]
