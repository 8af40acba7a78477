"""Slow clients against the shipped nginx configuration in front of two `taskyard api`
processes (gunicorn, 1 worker x 8 threads each, on PostgreSQL and Redis).

Without the proxy, 50 connections that send their request slowly hold every API thread
and other clients time out (issue 18). Here 50 of them run for 20 s, of three kinds:
connections that send nothing, connections that send a header line every 2 s, and
connections that send a whole head and then their body one byte every 2 s. Each slow
client reconnects when nginx closes it, so the pressure lasts. Meanwhile a probe opens a
new connection every 0.25 s and asks, in turn, `GET /healthz`, `POST /v1/jobs` and
`GET /v1/jobs/{id}`: every probe must be answered correctly within 1 s. None of the slow
requests may store anything. `pytest -s` prints the figures.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import threading
import time
from pathlib import Path

import attrs

from tests.e2e.harness import Api, Procs, clean_environment, free_port
from tests.e2e.proxies import nginx

SLOW_CONNECTIONS = 50
ATTACK_S = 20.0
DRIP_EVERY_S = 2.0
PROBE_EVERY_S = 0.25
PROBE_DEADLINE_S = 1.0
"""The bound every probe must meet (a probe's own socket timeout is longer, so that a late
answer is measured rather than cut)."""
PROBE_SOCKET_TIMEOUT_S = 5.0
RECONNECTS_MAX = 100
"""Per slow client: a bound on the loop, far above what 20 s can use."""
TOKEN = "proxy-test-token"


@attrs.define
class SlowClient:
    port: int
    kind: str
    stop: threading.Event
    connections: int = 0
    closed_by_server: int = 0

    def run(self) -> None:
        while not self.stop.is_set() and self.connections < RECONNECTS_MAX:
            self.connections += 1
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    self._drip(conn)
            except OSError:
                self.closed_by_server += 1

    def _drip(self, conn: socket.socket) -> None:
        body = json.dumps({"task": "sleep", "queue": "slow"}).encode()
        if self.kind != "silent":
            conn.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        if self.kind == "body":
            conn.sendall(
                b"Content-Type: application/json\r\n"
                + f"Authorization: Bearer {TOKEN}\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
        sent = 0
        while not self.stop.wait(DRIP_EVERY_S):
            if self.kind == "header":
                conn.sendall(f"X-Slow-{sent}: {sent}\r\n".encode())
            elif self.kind == "body" and sent < len(body) - 1:
                conn.sendall(body[sent : sent + 1])  # never the last byte
            sent += 1
            if self._closed(conn):
                self.closed_by_server += 1
                return

    @staticmethod
    def _closed(conn: socket.socket) -> bool:
        """Whether the server closed the connection (or answered, which it then closes)."""
        conn.setblocking(False)
        try:
            conn.recv(4096)
        except BlockingIOError:
            return False
        finally:
            conn.setblocking(True)
        return True


@attrs.define
class Probe:
    what: str
    status: int
    took_s: float


def _probe(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_SOCKET_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {TOKEN}", "Connection": "close"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_slow_clients_do_not_stop_the_api_answering_behind_the_shipped_nginx(
    procs: Procs,
    migrated_postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    env = clean_environment(
        TASKYARD_DATABASE_URL=migrated_postgres_url,
        TASKYARD_REDIS_URL=redis_url,
        TASKYARD_REDIS_KEY_PREFIX=redis_prefix,
        TASKYARD_API_TOKENS=TOKEN,
        TASKYARD_LOG_FORMAT="json",
    )
    ports = [free_port(), free_port()]
    for index, port in enumerate(ports, start=1):
        procs.start(
            f"api-{index}",
            ["api", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8"],
            env=env,
        )
    for port in ports:
        api = Api(f"http://127.0.0.1:{port}")
        api.wait_ready()
        api.close()
    queue = f"probe-{secrets.token_hex(3)}"
    probes: list[Probe] = []
    created: list[str] = []

    with nginx(tmp_path / "nginx", [f"127.0.0.1:{p}" for p in ports]) as port:
        assert _probe(port, "GET", "/nginx-health")[0] == 200
        stop = threading.Event()
        kinds = ("silent", "header", "body")
        clients = [
            SlowClient(port=port, kind=kinds[i % len(kinds)], stop=stop)
            for i in range(SLOW_CONNECTIONS)
        ]
        threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        turn = 0
        try:
            while time.monotonic() - began < ATTACK_S:
                what, status, took_s = _probe_once(port, turn, queue, created)
                probes.append(Probe(what=what, status=status, took_s=took_s))
                turn += 1
                stop.wait(max(0.0, PROBE_EVERY_S - took_s))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=DRIP_EVERY_S + 10)
        status, raw = _probe(port, "GET", "/v1/jobs?queue=slow&limit=10")

    worst = max(probes, key=lambda p: p.took_s)
    answered = [p for p in probes if p.took_s <= PROBE_DEADLINE_S]
    print(
        f"\nslow clients behind nginx: {SLOW_CONNECTIONS} slow connections "
        f"({', '.join(kinds)}) for {ATTACK_S:g} s, {sum(c.connections for c in clients)} "
        f"opened in all, {sum(c.closed_by_server for c in clients)} closed by nginx; "
        f"probes answered within {PROBE_DEADLINE_S:g} s: "
        f"{len(answered)} of {len(probes)}; worst probe {worst.took_s * 1000:.0f} ms "
        f"({worst.what})"
    )
    assert all(p.status in (200, 201) for p in probes), [p for p in probes if p.status >= 300]
    assert len(answered) == len(probes), [p for p in probes if p.took_s > PROBE_DEADLINE_S]
    assert len(probes) >= ATTACK_S / (PROBE_EVERY_S + PROBE_DEADLINE_S)
    assert sum(c.connections for c in clients) >= SLOW_CONNECTIONS
    # Nothing a slow client sent ever reached the API whole: not one job in its queue.
    assert status == 200 and json.loads(raw)["jobs"] == []
    assert len(created) == len([p for p in probes if p.what == "POST /v1/jobs"])


def _probe_once(port: int, turn: int, queue: str, created: list[str]) -> tuple[str, int, float]:
    """One probe: what it asked, the status (0: no answer), how long it took."""
    started = time.monotonic()
    try:
        what, status = _ask(port, turn, queue, created)
    except OSError as exc:
        what, status = f"{turn}: {exc!r}", 0
    return what, status, time.monotonic() - started


def _ask(port: int, turn: int, queue: str, created: list[str]) -> tuple[str, int]:
    if turn % 3 == 0:
        what = "GET /healthz"
        status, _ = _probe(port, "GET", "/healthz")
    elif turn % 3 == 1 or not created:
        what = "POST /v1/jobs"
        body = json.dumps({"task": "sleep", "queue": queue, "delay_seconds": 3600}).encode()
        status, raw = _probe(port, "POST", "/v1/jobs", body)
        if status == 201:
            created.append(json.loads(raw)["id"])
    else:
        what = "GET /v1/jobs/{id}"
        status, raw = _probe(port, "GET", f"/v1/jobs/{created[-1]}")
        assert status != 200 or json.loads(raw)["id"] == created[-1]
    return what, status
