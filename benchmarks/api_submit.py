"""`POST /v1/jobs` throughput of `taskyard api` (gunicorn) on PostgreSQL, measured with wrk.

    python benchmarks/api_submit.py                          # 2 workers x 4 threads, 15 s
    python benchmarks/api_submit.py --workers 4 --threads 8 --connections 32 --duration 30
    python benchmarks/api_submit.py --redis redis://127.0.0.1:6379/0   # ring doorbells too

Creates a database of its own on the server of --admin-url (dropped at the end), applies
the schema with `taskyard migrate`, starts `taskyard api` on a free loopback port, and runs
`wrk --latency` for --duration seconds with a Lua script that POSTs a `sleep` job. It
prints wrk's command and output, requests/s and the p50/p99 latency, and checks that the
number of jobs in the database equals the number of 201 answers wrk counted. Nothing runs
the jobs (no worker): this measures submission only. With --redis, each submission also
rings the queue's doorbell (keys under a prefix of its own, deleted at the end).

Needs `wrk` on PATH (`apt-get install -y wrk`). Loopback only; bounded by --duration.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

LUA = """
wrk.method = "POST"
wrk.body = '{"task": "sleep", "args": {"seconds": 0}}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def with_database(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def wait_ready(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the API at {url} was not ready within {deadline_s:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default=None, help="a Redis URL: ring doorbells as well")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=15, help="seconds (at most 120)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (apt-get install -y wrk)")
    assert 1 <= args.duration <= 120, "a bounded run"

    name = f"taskyard_bench_{secrets.token_hex(4)}"
    url = with_database(args.admin_url, name)
    prefix = f"taskyard-bench-{secrets.token_hex(4)}:"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    api: subprocess.Popen[bytes] | None = None
    workdir = Path(tempfile.mkdtemp(prefix="taskyard-bench-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
        env.update(TASKYARD_DATABASE_URL=url, TASKYARD_LOG_LEVEL="warning")
        if args.redis:
            env.update(TASKYARD_REDIS_URL=args.redis, TASKYARD_REDIS_KEY_PREFIX=prefix)
        taskyard = [sys.executable, "-m", "taskyard.entrypoints.cli"]
        subprocess.run([*taskyard, "migrate"], env=env, check=True, capture_output=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        api = subprocess.Popen(
            [
                *taskyard,
                "api",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
            ],
            env=env,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "api.err").open("wb"),
        )
        wait_ready(base, 30)
        script = workdir / "submit.lua"
        script.write_text(LUA)
        command = [
            "wrk",
            "--latency",
            f"-t{args.wrk_threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "-s",
            str(script),
            f"{base}/v1/jobs",
        ]
        print("$ " + " ".join(command), flush=True)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.duration + 60, check=True
        )
        print(done.stdout)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM taskyard.jobs").fetchone()
            stored = int(row[0]) if row else 0
        total = int(re.search(r"(\d+) requests in", done.stdout).group(1))  # type: ignore[union-attr]
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
        refused = int(bad.group(1)) if bad else 0
        rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
        p50 = re.search(r"\s50%\s+(\S+)", done.stdout)
        p99 = re.search(r"\s99%\s+(\S+)", done.stdout)
        assert rate and p50 and p99, done.stdout
        print(
            f"POST /v1/jobs: {float(rate.group(1)):.0f} requests/s, p50 {p50.group(1)}, "
            f"p99 {p99.group(1)} (gunicorn {args.workers}x{args.threads}, "
            f"{args.connections} connections, {args.duration} s, "
            f"{'with' if args.redis else 'without'} Redis); {total} requests, "
            f"{refused} not 2xx, {stored} jobs stored"
        )
        # wrk does not count the requests in flight when it stops (up to one per
        # connection); the API may have stored them.
        assert total - refused <= stored <= total + args.connections, (total, refused, stored)
        return 0
    finally:
        if api is not None and api.poll() is None:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                api.kill()
                api.wait()
        if args.redis:
            import redis

            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)
            client.close()
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
