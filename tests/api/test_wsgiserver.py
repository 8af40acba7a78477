"""The standalone's HTTP server (`wsgiserver.py`) on a loopback port: bodies it cannot
delimit are refused at once, a burst of connections is served, idle clients are let go.

Every wait is bounded by a socket timeout well above what a healthy answer needs; these
are bounds, not timings."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from taskyard.entrypoints import wsgiserver
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.standalone import Standalone

ANSWER_DEADLINE_S = 10.0
BURST = 200


@pytest.fixture
def system() -> Iterator[Standalone]:
    running = Standalone(Settings(database_url="memory://", port=0, concurrency=1)).start()
    try:
        yield running
    finally:
        running.stop(grace_s=0)


def _port(system: Standalone) -> int:
    return int(system.url.rsplit(":", 1)[1])


def _connect(system: Standalone) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(system)), timeout=ANSWER_DEADLINE_S)


def _read_all(conn: socket.socket) -> bytes:
    parts = []
    while chunk := conn.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def _status_and_body(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _stored(system: Standalone) -> int:
    from taskyard.domain.ports import JobQuery

    return len(system.store.list_jobs(JobQuery(limit=1000)).jobs)


POST_CHUNKED = (
    b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def test_a_chunked_body_is_refused_at_once_without_waiting_for_its_end(
    system: Standalone, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="taskyard.standalone")
    body = json.dumps({"task": "sleep"}).encode()
    with _connect(system) as conn:
        # The first chunk, and no end: a server that waits for the body never answers.
        conn.sendall(POST_CHUNKED + b"%x\r\n%s\r\n" % (len(body), body))
        status, headers, answer = _status_and_body(_read_all(conn))
    assert status == 411 and headers["content-type"] == "application/problem+json"
    assert json.loads(answer)["type"] == "urn:taskyard:problem:length-required"
    assert headers["connection"] == "close"
    assert _stored(system) == 0
    [refused] = [r for r in caplog.records if r.getMessage() == "request refused by the server"]
    assert (refused.method, refused.path, refused.status) == ("POST", "/v1/jobs", 411)  # type: ignore[attr-defined]


def test_a_whole_chunked_body_sent_at_once_gets_its_answer_not_a_reset(
    system: Standalone,
) -> None:
    body = json.dumps({"task": "sleep", "args": {"pad": "x" * 300_000}}).encode()
    wire = POST_CHUNKED + b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 4096]), body[i : i + 4096])
        for i in range(0, len(body), 4096)
    )
    with _connect(system) as conn:
        conn.sendall(wire + b"0\r\n\r\n")
        status, _, _ = _status_and_body(_read_all(conn))
    assert status == 411 and _stored(system) == 0


def test_two_different_content_lengths_are_a_400(system: Standalone) -> None:
    with _connect(system) as conn:
        conn.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 16\r\nContent-Length: 2\r\n\r\n" + b'{"task":"sleep"}'
        )
        status, _, _ = _status_and_body(_read_all(conn))
    assert status == 400 and _stored(system) == 0


def test_a_body_refused_unread_still_gets_its_answer(system: Standalone) -> None:
    """A 413 is decided from Content-Length; the body it did not read is drained so that
    closing does not reset the connection under the answer."""
    size = 3 * 1024 * 1024
    with _connect(system) as conn:
        head = (
            b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        conn.sendall(head + b" " * size)
        status, _, _ = _status_and_body(_read_all(conn))
    assert status == 413


def test_a_burst_of_connections_is_served_with_none_dropped(system: Standalone) -> None:
    """BURST clients connect at the same moment (the standard library's backlog of 5 lost
    some of them)."""
    results: list[object] = [None] * BURST
    start = threading.Barrier(BURST)

    def one(index: int) -> None:
        try:
            start.wait(timeout=ANSWER_DEADLINE_S)
            with _connect(system) as conn:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                results[index] = _status_and_body(_read_all(conn))[0]
        except Exception as exc:  # reported below, with the others
            results[index] = repr(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=3 * ANSWER_DEADLINE_S)
    assert Counter(results) == {200: BURST}


def test_an_idle_connection_is_let_go_quietly(
    system: Standalone, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wsgiserver.QuietHandler, "timeout", 0.2)
    with _connect(system) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")  # and nothing more
        assert _read_all(conn) == b""  # the server closed it (a 408 is not sent)
    assert "Traceback" not in capfd.readouterr().err
