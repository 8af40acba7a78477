"""Every process says on stdout, in one line, what it is and where it listens (or which
store it works on); the servers add the `TASKYARD_URL` to export when they listen anywhere
but the client commands' default, and gunicorn's own log names the address."""

from __future__ import annotations

import subprocess

import pytest

from taskyard.entrypoints.process import client_url, redact_url, url_hint
from tests.e2e.harness import Api, Procs, clean_environment, free_port, taskyard_command


def _client_command_reaches(url: str) -> None:
    """`taskyard queues` with only the exported variable to find the API."""
    done = subprocess.run(
        [*taskyard_command(), "queues"],
        env=clean_environment(TASKYARD_URL=url),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_process_prints_one_start_up_line(
    procs: Procs, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    env = clean_environment(
        TASKYARD_DATABASE_URL=postgres_url,
        TASKYARD_REDIS_URL=redis_url,
        TASKYARD_REDIS_KEY_PREFIX=redis_prefix,
        TASKYARD_LOG_FORMAT="json",
    )
    store = redact_url(postgres_url)
    assert procs.run(["migrate"], env=env).splitlines()[0] == f"taskyard migrate {store}"

    port = free_port()
    api = procs.start("api", ["api", "--bind", f"127.0.0.1:{port}", "--workers", "1"], env=env)
    worker = procs.start("worker", ["worker"], env=env)
    scheduler = procs.start("scheduler", ["scheduler"], env=env)
    standalone_port = free_port()
    standalone = procs.start(
        "standalone",
        ["standalone", "--port", str(standalone_port), "--db", "sqlite:///s.db"],
        env=clean_environment(),
    )

    url = f"http://127.0.0.1:{port}"
    assert api.banner() == (
        f"taskyard api listening on {url} (1 x 4 threads, store {store}, redis {redis_prefix})"
        f"; export TASKYARD_URL={url} for the client commands"
    )
    client = Api(url)
    client.wait_ready()
    client.close()
    _client_command_reaches(url)
    listening = [
        line["message"] for line in api.log_lines() if line["message"].startswith("Listening at:")
    ]
    assert listening and f"127.0.0.1:{port}" in listening[0], listening

    assert worker.banner().startswith(f"taskyard worker {worker.process_id()}: queues *, ")
    assert f"store {store}," in worker.banner()
    assert scheduler.banner().startswith(f"taskyard scheduler {scheduler.process_id()}: ")
    assert scheduler.banner().endswith(f"store {store}")

    standalone_url = f"http://127.0.0.1:{standalone_port}"
    assert standalone.url() == standalone_url
    assert standalone.banner().endswith(
        f"; export TASKYARD_URL={standalone_url} for the client commands"
    )
    _client_command_reaches(standalone_url)
    for proc in (api, worker, scheduler, standalone):
        assert proc.stdout().count("\n") == 1, (proc.name, proc.stdout())


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [("127.0.0.1", 9000, "http://127.0.0.1:9000"), ("0.0.0.0", 8000, "http://127.0.0.1:8000"),
     ("::", 8000, "http://[::1]:8000"), ("[::1]", 8001, "http://[::1]:8001"),
     ("db.internal", 80, "http://db.internal:80")],
)  # fmt: skip
def test_a_server_bound_to_every_address_is_reached_through_the_loopback(
    host: str, port: int, url: str
) -> None:
    assert client_url(host, port) == url


def test_only_a_server_the_client_commands_would_miss_names_the_variable() -> None:
    assert url_hint("http://127.0.0.1:8000") == ""
    assert url_hint(client_url("0.0.0.0", 8000)) == ""
    assert url_hint(None) == ""
    assert url_hint("http://127.0.0.1:9000") == (
        "; export TASKYARD_URL=http://127.0.0.1:9000 for the client commands"
    )
