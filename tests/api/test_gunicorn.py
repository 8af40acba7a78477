"""`taskyard api` as a real gunicorn process on a loopback port."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0
TOKEN = "gunicorn-test-token"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@attrs.define
class Server:
    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def chunked_post_status(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` with `Transfer-Encoding: chunked` (no Content-Length): the status.

        Sent in one go before reading, so a server that answers early (413) is not cut
        off mid-send by a client that stops to read."""
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 65536]), body[i : i + 65536])
            for i in range(0, len(body), 65536)
        )
        wire = ("\r\n".join(head) + "\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            # A server that answers early may close before all is sent; its answer stands.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.sendall(wire)
            status_line = conn.makefile("rb").readline()
        return int(status_line.split()[1])

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr_path.read_text().splitlines() if line]


def wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"taskyard api exited with {server.process.returncode}: "
                f"{server.stderr_path.read_text()}"
            )
        try:
            status, _, _ = server.request("GET", "/healthz")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"taskyard api did not answer within {START_DEADLINE_S} s")


@contextlib.contextmanager
def running_api(tmp_path: Path, *args: str, **environ: str) -> Iterator[Server]:
    """`taskyard api --db memory:// --threads 2 ARGS` on a free port with JSON logs (`--bind`
    is added unless given); stopped with SIGTERM (killed if it will not stop) at the end."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
    env.update(TASKYARD_LOG_FORMAT="json", **environ)
    bind = [] if "--bind" in args else ["--bind", f"127.0.0.1:{port}"]
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskyard.entrypoints.cli", "api", "--db", "memory://",
             *bind, "--threads", "2", *[a.replace("{port}", str(port)) for a in args]],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip
    running = Server(process=process, port=port, stderr_path=stderr_path)
    try:
        wait_until_serving(running)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_api(tmp_path, TASKYARD_API_TOKENS=TOKEN) as running:
        yield running


def test_the_api_serves_under_gunicorn_and_stops_on_sigterm(server: Server) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = json.dumps({"task": "sleep", "args": {"seconds": 0.1}}).encode()

    status, headers, raw = server.request(
        "POST", "/v1/jobs", body, {**auth, "X-Request-ID": "gunicorn-1"}
    )
    assert status == 201, raw
    job = json.loads(raw)
    assert headers["location"] == f"/v1/jobs/{job['id']}"
    assert headers["x-request-id"] == "gunicorn-1" and job["correlation_id"] == "gunicorn-1"

    status, _, raw = server.request("GET", headers["location"], headers=auth)
    assert status == 200 and json.loads(raw)["state"] == "queued"

    status, headers, raw = server.request(
        "POST", "/v1/jobs", body, {"Content-Type": "application/json"}
    )
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert headers["content-type"] == "application/problem+json"

    # A body sent in chunks, without a Content-Length, is read, and cut at 1 MiB.
    small = json.dumps({"task": "work", "args": {"pad": "x" * 1000}}).encode()
    assert server.chunked_post_status("/v1/jobs", small, auth) == 201
    padded = json.dumps({"task": "work", "args": {"pad": "x" * (1024 * 1024)}}).encode()
    assert server.chunked_post_status("/v1/jobs", padded, auth) == 413

    status, _, raw = server.request("GET", "/v1/jobs", headers=auth)
    assert [j["task"] for j in json.loads(raw)["jobs"]] == ["work", "sleep"]
    assert server.request("GET", "/readyz")[0] == 200
    status, _, raw = server.request("GET", "/metrics")
    assert status == 200 and b'taskyard_jobs{queue="default",state="queued"} 2.0' in raw

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=STOP_DEADLINE_S) == 0
    lines = server.log_lines()  # every line is JSON, gunicorn's own included
    [submitted] = [line for line in lines if line.get("request_id") == "gunicorn-1"]
    assert submitted["message"] == "request" and submitted["status"] == 201
    assert submitted["job_id"] == job["id"] and submitted["path"] == "/v1/jobs"
    assert any(line["logger"] == "gunicorn.error" for line in lines)


def test_a_second_api_on_the_same_port_stops_at_start_with_one_line(
    server: Server, tmp_path: Path
) -> None:
    """The workers listen with SO_REUSEPORT (the kernel spreads connections over them), so
    a second server on the port would share it silently, and one behind a port held by
    another program would retry for ever: the start-up probe refuses both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
    bind = f"127.0.0.1:{server.port}"
    done = subprocess.run(
        [sys.executable, "-m", "taskyard.entrypoints.cli", "api", "--db", "memory://",
         "--bind", bind],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=START_DEADLINE_S,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"taskyard: --bind: cannot listen on {bind}: Address already in use"
    ]
    assert server.request("GET", "/healthz")[0] == 200  # the first one is untouched


@pytest.mark.parametrize(
    ("bind", "reuse_port"),
    [("127.0.0.1:8000", True), ("[::1]:8000", True), ("127.0.0.1:0", False),
     ("unix:/run/taskyard.sock", False)],
)  # fmt: skip
def test_workers_get_sockets_of_their_own_only_where_that_is_one_address(
    bind: str, reuse_port: bool
) -> None:
    from taskyard.entrypoints import config
    from taskyard.entrypoints.commands.api import gunicorn_options

    settings = config.Settings(database_url="sqlite:///x.db", bind=bind)
    assert gunicorn_options(settings)["reuse_port"] is reuse_port


def test_an_open_api_on_every_address_is_served_when_asked_for_and_says_so(
    tmp_path: Path,
) -> None:
    """Without tokens, 0.0.0.0 is refused (tests/cli/test_exposure.py) unless --open."""
    with running_api(tmp_path, "--bind", "0.0.0.0:{port}", "--open") as server:
        assert server.request("GET", "/v1/jobs")[0] == 200
    [warning] = [line for line in server.log_lines() if line["logger"] == "taskyard.exposure"]
    assert warning["level"] == "warning" and warning["setting"] == "--open"
    assert warning["message"].startswith("serving an open API")


def test_the_dashboard_is_served_under_gunicorn_behind_its_login(server: Server) -> None:
    status, headers, raw = server.request("GET", "/ui")
    assert status == 401 and b'name="token"' in raw
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = server.request("POST", "/ui/login", f"token={TOKEN}".encode(), form)
    assert status == 303 and headers["location"] == "/ui"
    cookie = headers["set-cookie"].split(";")[0]
    assert TOKEN not in cookie
    status, headers, raw = server.request("GET", "/ui/queues", headers={"Cookie": cookie})
    assert status == 200 and b"<h1>Queues</h1>" in raw
    status, _, raw = server.request("GET", "/ui/static/ui.js")
    assert status == 200 and b"X-Taskyard-Partial" in raw
