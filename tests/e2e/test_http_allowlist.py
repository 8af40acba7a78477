"""The `http` task's allowlist end to end, on `taskyard standalone`: an `[::1]:PORT` entry
lets a job call that port, and a bare `127.0.0.1` does not let a job reach another port of
the machine (here, the API's own)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Api, Procs, clean_environment
from tests.eventually import eventually


class _Hook(http.server.BaseHTTPRequestHandler):
    calls: list[str] = []

    def do_POST(self) -> None:
        _Hook.calls.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def hook() -> Iterator[int]:
    """A web hook on [::1] (loopback only); yields its port."""
    _Hook.calls = []
    server = _Server6(("::1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_an_ipv6_entry_reaches_its_port_and_a_bare_host_reaches_no_other(
    procs: Procs, tmp_path: Path, hook: int
) -> None:
    system = procs.start(
        "standalone",
        [
            "standalone",
            "--port",
            "0",
            "--db",
            f"sqlite:///{tmp_path / 'hooks.db'}",
            "--poll-interval",
            "0.1",
            "--http-allowed-hosts",
            f"[::1]:{hook},127.0.0.1",
        ],
        env=clean_environment(),
    )
    api = Api(system.url())
    api.wait_ready()
    try:
        job = api.ok(
            "POST",
            "/v1/jobs",
            {
                "task": "http",
                "args": {"url": f"http://[::1]:{hook}/called", "method": "POST", "body": {"n": 1}},
            },
        )

        def succeeded() -> bool:
            return bool(api.ok("GET", f"/v1/jobs/{job['id']}")["state"] == "succeeded")

        eventually(succeeded, timeout_s=30, what="the http job to [::1] succeeded")
        assert _Hook.calls == ["/called"]

        own_port = system.url().rsplit(":", 1)[1]
        status, problem = api.call(
            "POST",
            "/v1/jobs",
            {"task": "http", "args": {"url": f"http://127.0.0.1:{own_port}/v1/jobs"}},
        )
        assert status == 422 and [e["field"] for e in problem["errors"]] == ["args.url"]
        assert len(api.ok("GET", "/v1/jobs")["jobs"]) == 1
    finally:
        api.close()
