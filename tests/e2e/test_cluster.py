"""The production topology as real processes on the real PostgreSQL and Redis: `migrate`,
one `api` (gunicorn), two `scheduler`s, three `worker`s. 500 jobs go in through the API;
one worker and the leading scheduler are SIGKILLed mid-run. Every job must come to what
its kind says, attempt histories must be consistent, nothing may be committed twice, and
the standby scheduler must take over within about one leader TTL."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from taskyard.adapters.postgres import PostgresJobStore
from tests.e2e.harness import Api, Proc, Procs, clean_environment, free_port
from tests.e2e.workload import Submitted, judge, plan, submit, wait_all_terminal
from tests.eventually import eventually

LEASE_TTL_S = 2.0
LEADER_TTL_S = 2.0
SETTLE_DEADLINE_S = 120.0


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresJobStore]:
    with PostgresJobStore.from_url(postgres_url) as opened:
        yield opened


def _running_by_worker(api: Api, queue: str) -> Counter[str]:
    page = api.ok("GET", f"/v1/jobs?state=running&queue={queue}&limit=1000")
    return Counter(job["lease"]["worker"] for job in page["jobs"] if job["lease"])


def _leader(api: Api) -> str | None:
    leaders = [s["id"] for s in api.ok("GET", "/v1/schedulers")["schedulers"] if s["leader"]]
    assert len(leaders) <= 1, leaders
    return leaders[0] if leaders else None


def test_no_job_is_lost_when_a_worker_and_the_leading_scheduler_are_killed(
    procs: Procs,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    store: PostgresJobStore,
    request: pytest.FixtureRequest,
) -> None:
    began = time.monotonic()
    queue = f"e2e-{secrets.token_hex(3)}"
    env = clean_environment(
        TASKYARD_DATABASE_URL=postgres_url,
        TASKYARD_REDIS_URL=redis_url,
        TASKYARD_REDIS_KEY_PREFIX=redis_prefix,
        TASKYARD_LOG_FORMAT="json",
        TASKYARD_LEASE_TTL_SECONDS=str(LEASE_TTL_S),
        TASKYARD_LEADER_TTL_SECONDS=str(LEADER_TTL_S),
        TASKYARD_POLL_INTERVAL_SECONDS="0.2",
    )
    assert "taskyard schema at version" in procs.run(["migrate"], env=env)
    port = free_port()
    api_proc = procs.start(
        "api", ["api", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"], env=env
    )
    schedulers = [procs.start(f"scheduler{i}", ["scheduler"], env=env) for i in range(2)]
    worker_args = ["worker", "--queues", queue, "--concurrency", "8", "--grace-period", "5"]
    workers = [procs.start(f"worker{i}", worker_args, env=env) for i in range(3)]
    by_id: dict[str, Proc] = {p.process_id(): p for p in [*schedulers, *workers]}
    api = Api(f"http://127.0.0.1:{port}")
    request.addfinalizer(api.close)
    api.wait_ready()
    up = time.monotonic()

    planned = plan(total=500, queue=queue, long_count=24, long_s=3.0, delay_s=3.0)
    submitted = Submitted()
    half = len(planned) // 2
    submit(api, planned[:half], submitted)

    # SIGKILL a worker while it runs jobs: they must run again elsewhere.
    running: Counter[str] = Counter()

    def some_worker_runs_jobs() -> bool:
        running.clear()
        running.update(_running_by_worker(api, queue))
        return bool(running)

    eventually(some_worker_runs_jobs, timeout_s=30, what="a worker running jobs")
    victim_id = running.most_common(1)[0][0]
    by_id[victim_id].kill()

    # SIGKILL the leading scheduler: the standby must take over within about its TTL.
    eventually(lambda: _leader(api) is not None, timeout_s=30, what="a leading scheduler")
    leader_id = _leader(api)
    assert leader_id is not None
    by_id[leader_id].kill()
    killed_at = time.monotonic()
    [standby_id] = [p.process_id() for p in schedulers if p.process_id() != leader_id]
    eventually(
        lambda: _leader(api) == standby_id,
        timeout_s=3 * LEADER_TTL_S + 5,
        what="the standby scheduler leads",
    )
    takeover_s = time.monotonic() - killed_at

    submit(api, planned[half:], submitted)
    submitted_at = time.monotonic()
    wait_all_terminal(store, submitted.ids, timeout_s=SETTLE_DEADLINE_S)
    settled = time.monotonic()

    verdict = judge(store, submitted)
    assert verdict.lost_by(victim_id), "the killed worker's jobs were reaped and ran again"
    assert len(submitted.ids) == 500

    survivors = [api_proc, *(p for p in [*schedulers, *workers] if p.process.poll() is None)]
    assert len(survivors) == 1 + 1 + 2
    for proc in survivors:
        assert proc.stop() == 0, proc.stderr()[-2000:]
    for proc in workers:
        lines = proc.log_lines()
        if proc.process_id() != victim_id:
            finished = [line for line in lines if line["message"] == "handler finished"]
            assert finished and all(
                line["worker_id"] == proc.process_id() and line["job_id"] and line["attempt"]
                for line in finished
            )
    print(
        f"\ne2e cluster: up {up - began:.1f} s, submitted 500 in "
        f"{submitted_at - up:.1f} s (with kills), settled {settled - submitted_at:.1f} s later, "
        f"standby took over {takeover_s:.1f} s after the leader died; "
        f"attempts by outcome {dict(verdict.outcomes())}"
    )
