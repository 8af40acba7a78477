"""Finding PostgreSQL and Redis for tests, in the order DEVELOPERS.md gives:

1. an explicit URL in the environment (`TASKYARD_TEST_DATABASE_URL`, `TASKYARD_TEST_REDIS_URL`);
2. Docker through testcontainers, where a Docker engine answers;
3. the local default ports (127.0.0.1:5432 as `postgres`, 127.0.0.1:6379).

Where none answers, a service test is skipped with a loud reason, unless
`TASKYARD_REQUIRE_SERVICES=1` (CI sets it), which turns the skip into a failure.

Every test session gets its own PostgreSQL database (dropped afterwards) and its own
Redis key prefix (its keys deleted afterwards), so runs sharing a server never meet.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def services_required() -> bool:
    return os.environ.get("TASKYARD_REQUIRE_SERVICES") == "1"


def unavailable(what: str, why: str) -> None:
    message = f"*** {what} NOT AVAILABLE: {why}. Service tests are skipped. ***"
    if services_required():
        pytest.fail(f"{message} (TASKYARD_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def docker_running() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _postgres_answers(url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The admin URL of a PostgreSQL server to create test databases on."""
    explicit = os.environ.get("TASKYARD_TEST_DATABASE_URL")
    if explicit:
        problem = _postgres_answers(explicit)
        if problem:
            unavailable("PostgreSQL", f"TASKYARD_TEST_DATABASE_URL does not answer: {problem}")
        yield explicit
        return
    if docker_running():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    problem = _postgres_answers(LOCAL_POSTGRES)
    if problem:
        unavailable("PostgreSQL", f"nothing at {LOCAL_POSTGRES} and no Docker engine: {problem}")
    yield LOCAL_POSTGRES


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str = "taskyard_test") -> Iterator[str]:
    """Create a database of its own, yield its URL, drop it afterwards."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def truncate_taskyard(url: str) -> None:
    """Empty every taskyard table of a migrated database (its schema version stays)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE taskyard.jobs, taskyard.attempts, taskyard.dependencies,"
            " taskyard.paused_queues, taskyard.tasks, taskyard.schedules, taskyard.queue_retention,"
            " taskyard.queue_settings, taskyard.queue_starts"
        )


def _redis_answers(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    return None


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    explicit = os.environ.get("TASKYARD_TEST_REDIS_URL")
    if explicit:
        problem = _redis_answers(explicit)
        if problem:
            unavailable("Redis", f"TASKYARD_TEST_REDIS_URL does not answer: {problem}")
        yield explicit
        return
    if docker_running():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    problem = _redis_answers(LOCAL_REDIS)
    if problem:
        unavailable("Redis", f"nothing at {LOCAL_REDIS} and no Docker engine: {problem}")
    yield LOCAL_REDIS


def delete_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayRedis:
    """A `redis-server` of one test's own on a free loopback port, without persistence, which
    the test may stop, start again (same port) and flush. Never the shared server."""

    START_TIMEOUT_S = 10.0

    def __init__(self, binary: str, *, unix_socket: str | None = None) -> None:
        """On a free loopback port, or only on the Unix socket `unix_socket` when given."""
        self.binary = binary
        self.unix_socket = unix_socket
        self.port = 0 if unix_socket else free_port()
        self.url = f"unix://{unix_socket}" if unix_socket else f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        assert not self.running, "already running"
        listen = ["--unixsocket", self.unix_socket] if self.unix_socket else ["--bind", "127.0.0.1"]
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), *listen, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while _redis_answers(self.url) is not None:
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start at {self.url}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM; nothing is saved, so it comes back empty)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=self.START_TIMEOUT_S)
        self._process = None

    def flushall(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()


@contextlib.contextmanager
def throwaway_redis(
    *, start: bool = True, unix_socket: str | None = None
) -> Iterator[ThrowawayRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", "no redis-server binary on PATH for a throwaway server")
        raise AssertionError("unreachable")
    server = ThrowawayRedis(binary, unix_socket=unix_socket)
    try:
        if start:
            server.start()
        yield server
    finally:
        server.stop()
