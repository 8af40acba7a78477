"""Real taskyard processes for end-to-end tests: start them, read what they print, signal
them, and make sure none outlives its test.

Every wait has a deadline; every process a test starts is killed in the fixture's
`finally` if the test did not end it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def taskyard_command() -> list[str]:
    """The installed `taskyard` script next to this interpreter (what `pip install .`
    puts on PATH), else `python -m`."""
    script = Path(sys.executable).parent / "taskyard"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "taskyard.entrypoints.cli"]


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment without any TASKYARD_ setting from the machine, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
    env.update(extra)
    return env


@attrs.define(eq=False)
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def banner(self, timeout_s: float = START_DEADLINE_S) -> str:
        """The first line the process prints on stdout (it prints it once it is up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.stdout()
            if "\n" in text:
                return text.split("\n", 1)[0]
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with {self.process.returncode} before it was up:\n"
                    f"{self.stderr()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} printed nothing within {timeout_s:g} s:\n{self.stderr()}")
            time.sleep(0.02)

    def process_id(self) -> str:
        """The id a worker or scheduler prints: `taskyard worker <id>: ...`."""
        words = self.banner().split()
        assert words[:1] == ["taskyard"], words
        return words[2].rstrip(":")

    def url(self) -> str:
        match = re.search(r"listening on (http://\S+)", self.banner())
        assert match is not None, self.banner()
        return match.group(1)

    def send(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_DEADLINE_S)

    def wait(self, timeout_s: float = STOP_DEADLINE_S) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{self.name} did not exit within {timeout_s:g} s:\n{self.stderr()[-3000:]}"
            )

    def stop(self, timeout_s: float = STOP_DEADLINE_S) -> int:
        """SIGTERM and wait for the exit code."""
        self.send(signal.SIGTERM)
        return self.wait(timeout_s)

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr (the process runs with TASKYARD_LOG_FORMAT=json). A
        last line without its newline (the process was killed while writing it) is left out."""
        lines = []
        for line in self.stderr().splitlines(keepends=True):
            if line.startswith("{") and line.endswith("\n"):
                lines.append(json.loads(line))
        return lines


class Procs:
    """Starts processes for one test; `close()` kills whatever still runs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Proc] = []

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
    ) -> Proc:
        stdout_path = self.directory / f"{name}.out"
        stderr_path = self.directory / f"{name}.err"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                [*taskyard_command(), *args],
                env=dict(env),
                cwd=cwd or self.directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        proc = Proc(name=name, process=process, stdout_path=stdout_path, stderr_path=stderr_path)
        self.started.append(proc)
        return proc

    def run(self, args: Sequence[str], *, env: Mapping[str, str], timeout_s: float = 60) -> str:
        """Run a command to its end (`taskyard migrate`); its stdout, or the test fails."""
        done = subprocess.run(
            [*taskyard_command(), *args],
            env=dict(env),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert done.returncode == 0, (args, done.returncode, done.stderr)
        return done.stdout

    def close(self) -> None:
        for proc in self.started:
            if proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait(timeout=STOP_DEADLINE_S)


# --- talking to the API -------------------------------------------------------------------


@attrs.define
class Api:
    """A keep-alive HTTP client of one API address (one connection; reconnects)."""

    url: str
    timeout_s: float = 10.0
    _conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            parts = urlsplit(self.url)
            assert parts.hostname is not None and parts.port is not None, self.url
            self._conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=self.timeout_s
            )
        return self._conn

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for trial in range(2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return response.status, json.loads(raw) if raw else None
            except (http.client.HTTPException, ConnectionError):
                # A keep-alive connection the server closed meanwhile: once more, afresh.
                self.close()
                if trial:
                    raise
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = self.call(method, path, body)
        assert 200 <= status < 300, (method, path, status, doc)
        return doc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def wait_ready(self, timeout_s: float = START_DEADLINE_S, path: str = "/readyz") -> None:
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            try:
                status, last = self.call("GET", path)
                if status == 200:
                    return
            except OSError as exc:
                last = exc
                self.close()
            time.sleep(0.05)
        pytest.fail(f"{self.url}{path} not ready within {timeout_s:g} s: {last}")


class Gate:
    """A TCP forwarder from a free loopback port to `target`: while closed, connections to
    it are refused, as to a server that is down; `close()` also cuts every open one."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        assert self._listener is None, "already open"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        for sock in [listener, *sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
