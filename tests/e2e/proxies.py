"""The shipped nginx and PgBouncer configurations (deploy/), run for real on loopback.

A shipped file is used as it is, but for the addresses, ports and paths of this machine:
each is replaced by `templated`, which fails when the text it replaces is not in the file
exactly once, so a change to the shipped file cannot slip past the tests unnoticed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import services
from tests.e2e.harness import START_DEADLINE_S, STOP_DEADLINE_S, free_port
from tests.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX = "/usr/sbin/nginx"
PGBOUNCER = "/usr/sbin/pgbouncer"


def templated(text: str, replacements: Mapping[str, str]) -> str:
    for old, new in replacements.items():
        count = text.count(old)
        assert count == 1, f"{old!r} is in the shipped file {count} times, not once"
        text = text.replace(old, new)
    return text


def binary(path: str, name: str, package: str) -> str:
    """A Debian package's binary. `.ci/run` installs the package when it is missing (and
    sets TASKYARD_REQUIRE_SERVICES=1, so a test without it fails there); elsewhere the
    test is skipped with a loud reason."""
    found = shutil.which(name) or (path if os.access(path, os.X_OK) else None)
    if found is None:
        services.unavailable(name, f"not installed (apt-get install {package})")
    assert found is not None
    return found


def _port_answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def _running(args: list[str], *, port: int, log: Path, what: str) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:

        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()}")
            return _port_answers(port)

        eventually(up, timeout_s=START_DEADLINE_S, what=f"{what} listens on {port}")
        yield
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- nginx --------------------------------------------------------------------------------


@contextmanager
def nginx(directory: Path, upstreams: list[str]) -> Iterator[int]:
    """deploy/nginx/taskyard.conf in front of `upstreams` (`127.0.0.1:PORT`, one per
    `server` line of the shipped file); yields the port nginx listens on. The main
    configuration around it holds only paths (pid, logs, temporary files) and the events
    block that every nginx.conf has."""
    executable = binary(NGINX, "nginx", "nginx")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    shipped = (DEPLOY / "nginx" / "taskyard.conf").read_text()
    api_1, api_2 = upstreams
    site = directory / "taskyard.conf"
    site.write_text(
        templated(
            shipped,
            {
                "server api-1:8000 ": f"server {api_1} ",
                "server api-2:8000 ": f"server {api_2} ",
                "listen 8080;": f"listen 127.0.0.1:{port};",
            },
        )
    )
    # As root, nginx's workers would run as `nobody`, who cannot write into this test's
    # directory (its temporary files for bodies): keep them as the user running the test.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = directory / "nginx.conf"
    main.write_text(
        f"{user}\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n    access_log {directory / 'access.log'};\n{temp}\n    include {site};\n}}\n"
    )
    base = [executable, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(main)]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    with _running(
        [*base, "-g", "daemon off;"], port=port, log=directory / "nginx.out", what="nginx"
    ):
        yield port


# --- PgBouncer ----------------------------------------------------------------------------


@contextmanager
def pgbouncer(directory: Path, *, user: str, password: str) -> Iterator[int]:
    """deploy/pgbouncer/pgbouncer.ini in front of the PostgreSQL on 127.0.0.1:5432; yields
    its port. Clients log in as `user` with `password` (the auth file this test writes,
    as an operator would from deploy/pgbouncer/userlist.txt.example)."""
    executable = binary(PGBOUNCER, "pgbouncer", "pgbouncer")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth_file = directory / "userlist.txt"
    auth_file.write_text(f'"{user}" "{password}"\n')
    shipped = (DEPLOY / "pgbouncer" / "pgbouncer.ini").read_text()
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        templated(
            shipped,
            {
                "* = host=postgres port=5432": "* = host=127.0.0.1 port=5432",
                "listen_addr = 0.0.0.0": "listen_addr = 127.0.0.1",
                "listen_port = 6432": f"listen_port = {port}",
                "auth_file = /etc/pgbouncer/userlist.txt": f"auth_file = {auth_file}",
            },
        )
    )
    args = [executable, str(ini)]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; it reads its files before it drops to `-u`.
        args[1:1] = ["-u", "nobody"]
    with _running(args, port=port, log=directory / "pgbouncer.out", what="pgbouncer"):
        yield port
