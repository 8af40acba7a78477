"""The route walk (tests/routewalk.py) against both real servers, with tokens set: the
standalone's threaded WSGI server on SQLite, and gunicorn (`taskyard api`) on PostgreSQL.
Every protected route, every method, every spelling of its path, sent raw without a token:
each a 401, and the store unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import services
from tests.e2e.harness import Procs, clean_environment, free_port
from tests.eventually import eventually
from tests.routewalk import Send, http_sender, prepare, snapshot, walk

TOKEN = "route-walk-token"


def _serving(send: Send) -> None:
    def healthy() -> bool:
        try:
            return send("GET", "/healthz", None, {})[0] == 200
        except OSError:
            return False

    eventually(healthy, timeout_s=30, what="the server answers /healthz")


def _walk_and_compare(send: Send) -> None:
    values = prepare(send, TOKEN)
    before = snapshot(send, TOKEN)
    assert len(before[0]["jobs"]) == 2 and before[1]["queues"][0]["paused"]
    walk(send, values)
    assert snapshot(send, TOKEN) == before


def test_the_standalone_server_refuses_every_spelling_of_every_protected_route(
    procs: Procs, tmp_path: Path
) -> None:
    system = procs.start(
        "standalone",
        ["standalone", "--port", "0", "--db", f"sqlite:///{tmp_path / 'walk.db'}"],
        env=clean_environment(TASKYARD_API_TOKENS=TOKEN),
    )
    parts = urlsplit(system.url())
    assert parts.hostname is not None and parts.port is not None
    send = http_sender(parts.hostname, parts.port)
    _serving(send)
    _walk_and_compare(send)


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    with services.fresh_database(postgres_admin_url, prefix="taskyard_walk") as url:
        yield url


def test_gunicorn_refuses_every_spelling_of_every_protected_route(
    procs: Procs, database: str
) -> None:
    env = clean_environment(TASKYARD_API_TOKENS=TOKEN, TASKYARD_DATABASE_URL=database)
    procs.run(["migrate"], env=env)
    port = free_port()
    api = procs.start(
        "api", ["api", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"], env=env
    )
    send = http_sender("127.0.0.1", port)
    _serving(send)
    _walk_and_compare(send)
    assert api.stop() == 0
