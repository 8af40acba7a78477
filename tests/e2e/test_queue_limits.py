"""A queue's concurrency limit, end to end: `taskyard standalone` on SQLite with 8 worker
slots, a queue limited to 2 (`PUT /v1/queues/{name}`), 10 one-second `sleep` jobs.
`/v1/workers`, sampled every 100 ms, never shows more than 2 of them running, and all 10
succeed."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.harness import Api, Procs, clean_environment, free_port

SLOTS = 8
LIMIT = 2
JOBS = 10
SAMPLE_EVERY_S = 0.1
DEADLINE_S = 90.0
"""Ten one-second jobs two at a time take about 5 s; the rest is a slow machine's slack."""


def _running(workers: Any, ids: set[str]) -> int:
    return sum(len(ids & set(w["running_job_ids"])) for w in workers["workers"])


def test_a_queue_limited_to_2_never_runs_more_than_2_of_its_jobs_on_8_slots(
    procs: Procs,
) -> None:
    port = free_port()
    env = clean_environment(TASKYARD_POLL_INTERVAL_SECONDS="0.2")
    system = procs.start(
        "standalone",
        [
            "standalone",
            "--port",
            str(port),
            "--concurrency",
            str(SLOTS),
            "--db",
            f"sqlite:///{procs.directory / 'limits.db'}",
        ],
        env=env,
    )
    api = Api(system.url())
    api.wait_ready()
    settings = api.ok("PUT", "/v1/queues/limited", {"concurrency_limit": LIMIT})
    assert settings["concurrency_limit"] == LIMIT
    [worker] = api.ok("GET", "/v1/workers")["workers"]
    assert worker["concurrency"] == SLOTS

    jobs = [
        api.ok("POST", "/v1/jobs", {"task": "sleep", "args": {"seconds": 1}, "queue": "limited"})
        for _ in range(JOBS)
    ]
    ids = {job["id"] for job in jobs}
    last = jobs[-1]["id"]
    most, samples = 0, 0
    reasons: set[str] = set()
    states: dict[str, str] = {}
    began = time.monotonic()
    while time.monotonic() < began + DEADLINE_S:
        # Samples at 0, 100, 200, ... ms after the submissions (one is skipped if the
        # requests of the previous one took longer than that).
        time.sleep(max(0.0, began + samples * SAMPLE_EVERY_S - time.monotonic()))
        samples = int((time.monotonic() - began) / SAMPLE_EVERY_S) + 1
        most = max(most, _running(api.ok("GET", "/v1/workers"), ids))
        queue = next(q for q in api.ok("GET", "/v1/queues")["queues"] if q["name"] == "limited")
        assert queue["usage"]["running"] <= LIMIT, queue
        waiting = api.ok("GET", f"/v1/jobs/{last}")
        if waiting["state"] == "queued":
            reasons.add(waiting["waiting_reason"])
        states = {j["id"]: j["state"] for j in api.ok("GET", "/v1/jobs?queue=limited")["jobs"]}
        if all(state == "succeeded" for state in states.values()) and len(states) == JOBS:
            break
        assert most <= LIMIT, f"{most} of the queue's jobs ran at once"
    assert most <= LIMIT, f"{most} of the queue's jobs ran at once"
    assert sorted(states.values()) == ["succeeded"] * JOBS, states
    # The limit was reached (two ran at once), and a job waited because of it.
    assert most == LIMIT
    assert "concurrency_limit" in reasons, reasons
    assert api.ok("GET", f"/v1/jobs/{last}")["waiting_reason"] is None
    api.close()
    assert system.stop() == 0
