"""The HTTP server inside `taskyard standalone`: a stop wakes it, so it never waits for a
poll of its socket, and nothing a client leaves open holds the stop up."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from taskyard.entrypoints.wsgiserver import QuietHandler, ThreadingWSGIServer

DEADLINE_S = 10.0


def _hello(environ: object, start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"hello"]


@pytest.fixture
def server() -> Iterator[ThreadingWSGIServer]:
    made = ThreadingWSGIServer(("127.0.0.1", 0), QuietHandler)
    made.set_app(_hello)  # type: ignore[arg-type]
    try:
        yield made
    finally:
        made.server_close()


def _in_thread(target: object, **kwargs: object) -> threading.Thread:
    thread = threading.Thread(target=target, kwargs=kwargs, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_shutdown_wakes_the_server_instead_of_waiting_for_a_poll(
    server: ThreadingWSGIServer,
) -> None:
    # An hour between polls: only a wake-up can end the loop within the deadline.
    serving = _in_thread(server.serve_forever, poll_interval=3600)
    port = server.server_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=DEADLINE_S) as answer:
        assert answer.read() == b"hello"
    idle = socket.create_connection(("127.0.0.1", port))  # a client that never sends
    try:
        stopping = _in_thread(server.shutdown)
        stopping.join(DEADLINE_S)
        assert not stopping.is_alive(), "shutdown() waited for a poll"
        serving.join(DEADLINE_S)
        assert not serving.is_alive()
    finally:
        idle.close()


def test_a_shutdown_before_serving_began_ends_the_serving_at_once(
    server: ThreadingWSGIServer,
) -> None:
    server.shutdown()
    serving = _in_thread(server.serve_forever, poll_interval=3600)
    serving.join(DEADLINE_S)
    assert not serving.is_alive()
