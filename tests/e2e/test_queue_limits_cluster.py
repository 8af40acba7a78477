"""Queue limits across processes on the real PostgreSQL and Redis: one `api` (gunicorn), two
`scheduler`s and three `worker`s of 4 slots each claim from a queue limited to 2 running
at once and 1 per concurrency key. `/v1/workers`, sampled every 100 ms, never shows more
than 2 of its jobs running, nor 2 of one key; all of them succeed."""

from __future__ import annotations

import secrets
import time
from collections import Counter

from tests.e2e.harness import Api, Procs, clean_environment, free_port

WORKERS, SLOTS = 3, 4
LIMIT, KEY_LIMIT = 2, 1
KEYS = ("tenant-a", "tenant-b", "tenant-c")
JOBS = 12
SAMPLE_EVERY_S = 0.1
DEADLINE_S = 120.0


def test_a_queue_limit_holds_across_three_worker_processes(
    procs: Procs, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    queue = f"limited-{secrets.token_hex(3)}"
    env = clean_environment(
        TASKYARD_DATABASE_URL=postgres_url,
        TASKYARD_REDIS_URL=redis_url,
        TASKYARD_REDIS_KEY_PREFIX=redis_prefix,
        TASKYARD_POLL_INTERVAL_SECONDS="0.2",
    )
    procs.run(["migrate"], env=env)
    port = free_port()
    procs.start("api", ["api", "--bind", f"127.0.0.1:{port}", "--workers", "1"], env=env)
    for i in range(2):
        procs.start(f"scheduler{i}", ["scheduler"], env=env)
    worker_args = ["worker", "--queues", queue, "--concurrency", str(SLOTS)]
    workers = [procs.start(f"worker{i}", worker_args, env=env) for i in range(WORKERS)]
    api = Api(f"http://127.0.0.1:{port}")
    try:
        api.wait_ready()
        limits = {"concurrency_limit": LIMIT, "key_concurrency_limit": KEY_LIMIT}
        assert api.ok("PUT", f"/v1/queues/{queue}", limits)["concurrency_limit"] == LIMIT
        ids = {p.process_id() for p in workers}
        deadline = time.monotonic() + 30
        while {w["id"] for w in api.ok("GET", "/v1/workers")["workers"]} < ids:
            assert time.monotonic() < deadline, "the three workers registered"
            time.sleep(0.05)

        key_of: dict[str, str] = {}
        for n in range(JOBS):
            body = {
                "task": "sleep",
                "args": {"seconds": 0.5},
                "queue": queue,
                "concurrency_key": KEYS[n % len(KEYS)],
            }
            job = api.ok("POST", "/v1/jobs", body)
            key_of[job["id"]] = job["concurrency_key"]
        most, most_per_key = 0, 0
        states: dict[str, str] = {}
        began = time.monotonic()
        samples = 0
        while time.monotonic() < began + DEADLINE_S:
            time.sleep(max(0.0, began + samples * SAMPLE_EVERY_S - time.monotonic()))
            samples = int((time.monotonic() - began) / SAMPLE_EVERY_S) + 1
            running = [
                (w["id"], job_id)
                for w in api.ok("GET", "/v1/workers")["workers"]
                for job_id in w["running_job_ids"]
                if job_id in key_of
            ]
            most = max(most, len(running))
            per_key = Counter(key_of[job_id] for _, job_id in running)
            most_per_key = max([most_per_key, *per_key.values()])
            assert most <= LIMIT and most_per_key <= KEY_LIMIT, (running, per_key)
            listed = api.ok("GET", f"/v1/jobs?queue={queue}&limit=100")["jobs"]
            states = {j["id"]: j["state"] for j in listed}
            if len(states) == JOBS and set(states.values()) == {"succeeded"}:
                break
        assert sorted(states.values()) == ["succeeded"] * JOBS, states
        assert most == LIMIT, "two ran at once"
    finally:
        api.close()
