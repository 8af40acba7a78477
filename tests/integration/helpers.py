"""Helpers of the integration tests: quick job batches, a child-process claimer, a TCP proxy
that can drop a connection right after the server commits, waiting with a deadline."""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from taskyard.domain.ids import uuid7
from taskyard.domain.model import NewJob
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.submission import Submission

T = TypeVar("T")


def new_jobs(count: int, *, queue: str = "default", seed: int = 1) -> list[NewJob]:
    """`count` due jobs with distinct ids, made without asking the store for the time."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for n in range(count):
        submission = Submission(
            task="work", args={"n": n}, queue=queue, backoff=RetryPolicy(jitter=Jitter.NONE)
        )
        out.append(submission.to_new_job(job_id=uuid7(now, rng)))
    return out


def wait_for(what: str, probe: Callable[[], T | None], *, timeout_s: float = 10.0) -> T:
    """Poll `probe` until it returns something other than None, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)


def via(url: str, host: str, port: int, **query: str) -> str:
    """`url` with its host and port replaced (user, password and database kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    joined = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit((parts.scheme, netloc, parts.path, joined, parts.fragment))


def _completes(tag: bytes) -> re.Pattern[bytes]:
    """A CommandComplete message ('C', its length, then the tag) whose tag starts so."""
    return re.compile(rb"C\x00\x00\x00.(?=" + re.escape(tag) + rb")", re.DOTALL)


class CommitDroppingProxy:
    """A loopback TCP proxy in front of PostgreSQL. Once `arm()`ed, the next server reply
    that completes a COMMIT is swallowed and both sides are closed: the transaction has
    committed but the client never hears it (an ambiguous commit). Use it with
    `sslmode=disable` so the protocol is readable."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._armed = threading.Event()
        self._complete = _completes(b"COMMIT\x00")
        self.dropped = threading.Event()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._thread.start()

    def arm(self, tag: bytes = b"COMMIT\x00") -> None:
        """Drop the next reply completing a command whose tag starts with `tag`: a
        `COMMIT` by default; `b"SELECT "` for a write that is one autocommitted statement."""
        self._complete = _completes(tag)
        self.dropped.clear()
        self._armed.set()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self._target, timeout=5)
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for source, sink, watch in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, watch), daemon=True, name="proxy-pump"
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, watch: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if watch and self._armed.is_set() and self._complete.search(data):
                    self._armed.clear()
                    self.dropped.set()
                    break
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
