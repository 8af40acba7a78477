"""The production topology under a nemesis, judged by the simulator's checker.

One `api` (gunicorn), two `scheduler`s and four `worker`s run on the machine's PostgreSQL
(a database of the test's own) and a throwaway `redis-server`. A client submits a seeded
mix of jobs through the API (`mix.py`) while a seeded nemesis (`nemesis.py`), every few
seconds, SIGKILLs a worker or the leading scheduler and restarts it, SIGSTOPs a worker past
its lease, restarts or flushes Redis, or terminates the database's backends. Then the
nemesis stops, everything heals, and once every job has ended (bounded) the history is
read back from PostgreSQL: the checker's invariants, each job against its kind, and the
figures (`figures.py`): faults by kind, jobs lost, outcomes committed twice, and the
longest wait after a worker died, which must stay within lease TTL + reaper interval +
a margin.

Size and replay, by environment variable:

    TASKYARD_CHAOS_JOBS=10000   (default 1000)
    TASKYARD_CHAOS_RATE=40      jobs submitted per second (default 25)
    TASKYARD_CHAOS_SEED=1234    replays that seed's fault schedule and mix (default: random)

The seed is printed first (and named in every failure).
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.scheduler import SchedulerConfig
from tests.chaos import figures
from tests.chaos.cluster import Cluster, Topology
from tests.chaos.history import read_history, verdict, wait_quiet
from tests.chaos.mix import Client, Resend, plan_mix
from tests.chaos.nemesis import FaultKind, Nemesis, plan_faults
from tests.e2e.harness import Api, Procs
from tests.eventually import eventually
from tests.services import ThrowawayRedis


@attrs.frozen(kw_only=True)
class Size:
    jobs: int
    rate_per_s: float
    seed: int
    seed_given: bool

    @classmethod
    def from_environment(cls) -> Size:
        seed_text = os.environ.get("TASKYARD_CHAOS_SEED", "")
        return cls(
            jobs=int(os.environ.get("TASKYARD_CHAOS_JOBS", "1000")),
            rate_per_s=float(os.environ.get("TASKYARD_CHAOS_RATE", "25")),
            seed=int(seed_text) if seed_text else secrets.randbelow(2**31),
            seed_given=bool(seed_text),
        )

    @property
    def submit_s(self) -> float:
        return self.jobs / self.rate_per_s

    @property
    def settle_deadline_s(self) -> float:
        """From the end of the faults until every job must have ended."""
        return 60.0 + self.jobs / 50

    @property
    def timeout_s(self) -> float:
        return 120.0 + self.submit_s * 1.5 + self.settle_deadline_s


SIZE = Size.from_environment()
TOPOLOGY = Topology()
REAPER_INTERVAL_S = SchedulerConfig(scheduler_id="-").tick_interval_s
"""How often the leading scheduler reaps expired leases (the scheduler's default)."""
WAIT_MARGIN_S = 1.0
"""On top of lease TTL + reaper interval: the claim after the reap (a doorbell rings at the
reap; idle workers also poll every 0.2 s) and a busy 2-core machine."""
WAIT_BOUND_S = TOPOLOGY.lease_ttl_s + REAPER_INTERVAL_S + WAIT_MARGIN_S
FULL_ROUND_DEADLINE_S = 90.0


@pytest.fixture
def store(chaos_database_url: str) -> Iterator[PostgresJobStore]:
    with PostgresJobStore.from_url(chaos_database_url) as opened:
        yield opened


def _counts(counter: Counter[FaultKind]) -> str:
    return ", ".join(f"{kind.value} {counter[kind]}" for kind in FaultKind)


def _describe(wait: figures.Wait | None) -> str:
    if wait is None:
        return "-"
    return f"{wait.wait_s:.2f} s ({wait.how}, after a {wait.fault.kind.value})"


@pytest.mark.timeout(SIZE.timeout_s)
def test_no_job_is_lost_or_committed_twice_under_a_nemesis(
    procs: Procs,
    chaos_database_url: str,
    throwaway_redis: ThrowawayRedis,
    store: PostgresJobStore,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    seed = SIZE.seed
    replay = (
        f"TASKYARD_CHAOS_SEED={seed} TASKYARD_CHAOS_JOBS={SIZE.jobs} "
        f"TASKYARD_CHAOS_RATE={SIZE.rate_per_s:g} pytest tests/chaos -s"
    )
    print(
        f"\nchaos SEED={seed} JOBS={SIZE.jobs} RATE={SIZE.rate_per_s:g}/s (seed "
        f"{'given' if SIZE.seed_given else 'drawn'}); to replay: {replay}",
        flush=True,
    )
    tag = secrets.token_hex(3)
    queue = f"chaos-{tag}"
    plan = plan_mix(seed, total=SIZE.jobs, queue=queue, tag=f"chaos-{seed}-{tag}")
    cluster = Cluster(
        procs,
        database_url=chaos_database_url,
        redis=throwaway_redis,
        queue=queue,
        topology=TOPOLOGY,
    )
    log_path = tmp_path / "faults.log"

    def say(line: str) -> None:
        print(line, flush=True)
        with log_path.open("a") as out:
            out.write(line + "\n")

    try:
        cluster.start()
        up = time.monotonic()
        nemesis = Nemesis(
            cluster,
            plan_faults(seed, workers=TOPOLOGY.workers, lease_ttl_s=TOPOLOGY.lease_ttl_s),
            worker_recovery_s=WAIT_BOUND_S,
            say=say,
        ).start()
        api = Api(cluster.api_url)
        try:
            submitted = Client(api).run(plan, rate_per_s=SIZE.rate_per_s)
            # A short run goes on until every kind of fault has struck once.
            eventually(
                lambda: nemesis.kinds_struck() == set(FaultKind),
                timeout_s=FULL_ROUND_DEADLINE_S,
                what="every kind of fault struck once",
            )
        finally:
            faults = nemesis.stop()
            api.close()
        calm = time.monotonic()
        exited = cluster.heal()
        quiet = wait_quiet(store, queue, timeout_s=SIZE.settle_deadline_s)
        settled = time.monotonic()
        exits = cluster.stop()
        jobs, attempts = read_history(store, queue)
        worker_lines = cluster.worker_log_lines()
    finally:
        cluster.close()
    read = time.monotonic()

    # --- the figures ------------------------------------------------------------------------
    judged = verdict(plan, submitted, jobs, attempts)
    report, lost, twice = judged.report, judged.lost, judged.twice
    waits = figures.waits_after_worker_faults(faults, jobs, attempts)
    longest = waits.longest
    runs = figures.handler_runs(worker_lines)
    reran = sorted({job for (job, outcome), n in runs.items() if outcome == "succeeded" and n > 1})
    by_kind = Counter(f.kind for f in faults)
    kinds = Counter(item.kind.value for item in plan)
    backends = sum(f.count for f in faults if f.kind is FaultKind.TERMINATE_BACKENDS)
    takeovers = [f.took_s for f in faults if f.kind is FaultKind.KILL_LEADER]
    print(
        f"chaos SEED={seed}: {SIZE.jobs} jobs {dict(kinds)}; up {up - began:.1f} s, faults for "
        f"{calm - up:.1f} s, settled {settled - calm:.1f} s later, read back in "
        f"{read - settled:.1f} s, {read - began:.1f} s in all\n"
        f"  faults by kind {_counts(by_kind)} ({len(faults)} in all; "
        f"{backends} backends terminated; leader kills over in "
        f"{', '.join(f'{s:.1f}' for s in takeovers) or '-'} s)\n"
        f"  jobs lost {lost}; outcomes committed twice {len(twice)}; handlers that ran to "
        f"success more than once {len(reran)} (at-least-once; one committed)\n"
        f"  longest wait after a worker died {_describe(longest)}"
        f" over {len(waits.waits)} lost attempts; bound {WAIT_BOUND_S:.1f} s "
        f"(lease {TOPOLOGY.lease_ttl_s:g} + reaper {REAPER_INTERVAL_S:g} + margin "
        f"{WAIT_MARGIN_S:g}); attempts lost with no fault on their worker "
        f"{len(waits.unexplained)}\n"
        f"  attempts by outcome {dict(figures.outcomes(attempts))}; requests sent again "
        f"{dict(submitted.resent)}; replays {len(submitted.replays)}; exit codes "
        f"{sorted(set(exits.values()))}",
        flush=True,
    )

    # --- the verdict ------------------------------------------------------------------------
    context = f"({replay}; faults in {log_path})"
    assert lost == 0, f"{lost} jobs lost (every job ended in time: {quiet}) {context}"
    assert not twice, f"outcomes committed twice on {twice[:10]} {context}"
    assert set(jobs) == submitted.acknowledged, (
        f"{len(set(jobs) - submitted.acknowledged)} jobs stored that no answer named, "
        f"{len(submitted.acknowledged - set(jobs))} acknowledged and missing {context}"
    )
    assert report.ok, f"{judged.violations}\n{context}"
    assert {"one_outcome", "one_live_lease", "fenced_writes", "idempotency"} <= set(report.checked)
    problems = judged.problems
    assert not problems, f"{len(problems)} jobs went wrong {context}:\n" + "\n".join(problems[:20])
    for index, resend, status in submitted.replay_answers:
        expected = 200 if resend is Resend.SAME else 409
        assert status == expected, f"resend ({resend.value}) of #{index} answered {status}"

    assert set(by_kind) == set(FaultKind), f"faults {by_kind} {context}"
    assert longest is not None, f"no worker died holding a job: nothing shows recovery {context}"
    assert longest.wait_s <= WAIT_BOUND_S, (
        f"job {longest.job_id} waited {longest.wait_s:.2f} s after the {longest.fault.kind.value} "
        f"of {longest.fault.target}, over the {WAIT_BOUND_S:.1f} s bound {context}"
    )
    assert not exited, "processes exited on their own:\n" + "\n".join(exited)
    assert all(code == 0 for code in exits.values()), (exits, context)
