"""Many claimers at once on real PostgreSQL, against governed queues: 16 threads, each
with its own connection, claim (through the store's claim statement), sometimes finish
and sometimes let a short lease lapse, while a scheduler thread reaps and a sampler
watches. Sampled within the claimers and at the end: running jobs with a live lease per
queue and per key never exceed the limits; every start of a rate-limited queue and key
fits its sliding window; every job was claimed exactly once per attempt."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from taskyard.adapters.postgres import PostgresJobStore, hotpaths
from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.ports import ClaimRequest
from taskyard.domain.submission import Submission
from taskyard.domain.transitions import Report, ReportKind
from tests import services

pytestmark = pytest.mark.timeout(300)

CLAIMERS = 16
LOOPS_MAX = 120
SECONDS_MAX = 20.0
LIMITS = {
    "capped": QueueLimits(concurrency_limit=6, key_concurrency_limit=2, weight=2),
    "rated": QueueLimits(
        concurrency_limit=4,
        rate_limit=RateLimit(count=12, period_s=0.5),
        key_rate_limit=RateLimit(count=4, period_s=0.5),
    ),
}
KEYS = [None, "t0", "t1", "t2", "t3", "t4"]

_LIVE = """
SELECT queue, concurrency_key, count(*) FROM taskyard.jobs
WHERE state = 'running' AND lease_expires_at >= now() GROUP BY queue, concurrency_key
"""


def over_limits(rows: list[tuple[str, str | None, int]]) -> list[str]:
    """What a sample of live leases shows beyond a limit."""
    problems = []
    by_queue: Counter[str] = Counter()
    for queue, key, count in rows:
        by_queue[queue] += count
        limits = LIMITS.get(queue)
        cap = limits.key_concurrency_limit if limits else None
        if key is not None and cap is not None and count > cap:
            problems.append(f"{queue}/{key}: {count} running > {cap}")
    for queue, count in by_queue.items():
        limits = LIMITS.get(queue)
        if limits and limits.concurrency_limit is not None and count > limits.concurrency_limit:
            problems.append(f"{queue}: {count} running > {limits.concurrency_limit}")
    return problems


def window_breaches(starts: list[datetime], rate: RateLimit) -> list[datetime]:
    """Starts after which more than `count` fell in `(t - period, t]`."""
    period = timedelta(seconds=rate.period_s)
    ordered = sorted(starts)
    return [
        t
        for i, t in enumerate(ordered)
        if sum(1 for s in ordered[: i + 1] if s > t - period) > rate.count
    ]


def test_concurrent_claimers_never_exceed_the_limits_and_claim_each_attempt_once(
    migrated_postgres_url: str,
) -> None:
    services.truncate_taskyard(migrated_postgres_url)
    rng = random.Random(15)
    with PostgresJobStore.from_url(migrated_postgres_url) as store:
        for queue, limits in LIMITS.items():
            store.set_queue_limits(queue, limits)
        jobs = [
            Submission(
                task="t", queue=queue, concurrency_key=rng.choice(KEYS), priority=rng.randint(0, 2)
            ).to_new_job(job_id=UUID(int=rng.getrandbits(128)))
            for queue, count in (("capped", 300), ("rated", 200), ("free", 150))
            for _ in range(count)
        ]
        store.enqueue(jobs)

        claims: list[tuple[UUID, int]] = []
        problems: list[str] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        deadline = time.monotonic() + SECONDS_MAX
        stop = threading.Event()

        def claimer(index: int) -> None:
            mine = random.Random(index)
            try:
                with psycopg.connect(migrated_postgres_url, autocommit=True) as conn:
                    for _ in range(LOOPS_MAX):
                        if time.monotonic() > deadline:
                            break
                        queues = mine.choice([None, ("capped",), ("rated", "free")])
                        request = ClaimRequest(
                            worker=f"w{index}",
                            limit=mine.randint(1, 4),
                            lease_ttl_s=mine.choice([0.2, 5.0, 5.0]),
                            queues=None if queues is None else frozenset(queues),
                        )
                        claimed = hotpaths.claim(conn, request)
                        sample = over_limits(conn.execute(_LIVE).fetchall())
                        with lock:
                            claims.extend((job.id, job.attempt) for job in claimed)
                            problems.extend(sample)
                        done = [job for job in claimed if mine.random() < 0.8]
                        if done:
                            time.sleep(mine.uniform(0, 0.02))
                            reports = [
                                Report(ref=job.ref(), kind=ReportKind.SUCCEEDED) for job in done
                            ]
                            hotpaths.report_succeeded(conn, reports)
                        if not claimed:
                            time.sleep(0.01)
            except BaseException as exc:  # pragma: no cover - shown by the assertion
                with lock:
                    errors.append(exc)

        def scheduler() -> None:
            try:
                while not stop.is_set() and time.monotonic() <= deadline:
                    store.reap_expired(limit=100)
                    store.promote_due(limit=100)
                    stop.wait(0.05)
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        threads = [threading.Thread(target=claimer, args=(i,)) for i in range(CLAIMERS)]
        reaper = threading.Thread(target=scheduler)
        for thread in [*threads, reaper]:
            thread.start()
        for thread in threads:
            thread.join(timeout=SECONDS_MAX + 60)
        stop.set()
        reaper.join(timeout=30)
        assert not any(t.is_alive() for t in [*threads, reaper])
        assert errors == []

        with psycopg.connect(migrated_postgres_url) as conn:
            final = over_limits(conn.execute(_LIVE).fetchall())
            attempts: list[tuple[Any, ...]] = conn.execute(
                "SELECT a.job_id, a.attempt, a.started_at, j.queue, j.concurrency_key"
                " FROM taskyard.attempts AS a JOIN taskyard.jobs AS j ON j.id = a.job_id"
            ).fetchall()

    assert problems == [] and final == []
    # Exactly once per attempt: every claim handed out a distinct (job, attempt), and
    # the store recorded exactly those.
    assert len(claims) == len(set(claims))
    assert set(claims) == {(job_id, attempt) for job_id, attempt, *_ in attempts}
    assert len(claims) > 100, "the claimers got little done: nothing was tested"
    # The rate limits held in every sliding window, by the store's clock.
    rated = LIMITS["rated"]
    assert rated.rate_limit is not None and rated.key_rate_limit is not None
    starts = [at for _, _, at, queue, _ in attempts if queue == "rated"]
    assert window_breaches(starts, rated.rate_limit) == []
    by_key: dict[str, list[datetime]] = defaultdict(list)
    for _, _, at, queue, key in attempts:
        if queue == "rated" and key is not None:
            by_key[key].append(at)
    for key, times in by_key.items():
        assert window_breaches(times, rated.key_rate_limit) == [], key
    assert Counter(queue for *_, queue, _ in attempts).keys() == {"capped", "rated", "free"}


def _one_limited_queue_with_a_running_job(url: str) -> tuple[PostgresJobStore, Any, UUID]:
    """A queue limited to one running job, with one job running (a long lease) and one
    more queued; returns the store, the running job and the queued job's id."""
    services.truncate_taskyard(url)
    store = PostgresJobStore.from_url(url)
    store.set_queue_limits("one", QueueLimits(concurrency_limit=1))
    first, second = (
        Submission(task="t", queue="one").to_new_job(job_id=UUID(int=n)) for n in (1, 2)
    )
    store.enqueue([first])
    store.enqueue([second])
    request = ClaimRequest(worker="w1", limit=1, lease_ttl_s=60.0, queues=frozenset({"one"}))
    (running,) = store.claim(request)
    assert running.id == first.id
    return store, running, second.id


def _live_in(url: str, queue: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM taskyard.jobs WHERE queue = %s AND state = 'running'"
            " AND lease_expires_at >= clock_timestamp()",
            (queue,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_heartbeat_whose_clock_lags_cannot_revive_a_lease_a_claim_gave_back(
    migrated_postgres_url: str,
) -> None:
    """A heartbeat's statement time is taken when it starts; if it then waits (a busy
    box, a lock) while its lease expires and a claim gives that capacity to another job,
    it must not extend the lease afterwards: two jobs would run under a limit of one.
    (The heartbeat runs in a transaction begun before the lease expired, which is how a
    statement that started before and reached the row after behaves.)"""
    url = migrated_postgres_url
    store, running, _ = _one_limited_queue_with_a_running_job(url)
    with store, psycopg.connect(url) as late, psycopg.connect(url, autocommit=True) as other:
        began = late.execute("SELECT now()").fetchone()
        assert began is not None
        # The lease expires exactly at the heartbeat's statement time.
        other.execute(
            "UPDATE taskyard.jobs SET lease_expires_at = %s WHERE id = %s",
            (began[0], running.id),
        )
        time.sleep(0.01)
        claim = ClaimRequest(worker="w2", limit=1, lease_ttl_s=60.0, queues=frozenset({"one"}))
        second = hotpaths.claim(other, claim)
        assert len(second) == 1, "the expired lease gave its capacity back"
        hotpaths.heartbeat(late, [running.ref()], lease_ttl_s=60.0)
        late.commit()
    assert _live_in(url, "one") <= 1


def test_a_claim_does_not_give_back_the_capacity_of_a_lease_a_heartbeat_is_extending(
    migrated_postgres_url: str,
) -> None:
    """A heartbeat that reached its row while the lease was live, and commits after the
    lease's expiry, extends it: a claim that runs in between must not count that lease
    expired (it read the row before the heartbeat committed) and admit another job."""
    url = migrated_postgres_url
    store, running, _ = _one_limited_queue_with_a_running_job(url)
    claimed: list[Any] = []
    errors: list[BaseException] = []
    with store, psycopg.connect(url) as beat, psycopg.connect(url, autocommit=True) as other:
        other.execute(
            "UPDATE taskyard.jobs SET lease_expires_at = clock_timestamp() + interval '0.3 s'"
            " WHERE id = %s",
            (running.id,),
        )
        (status,) = hotpaths.heartbeat(beat, [running.ref()], lease_ttl_s=60.0)
        assert status.held
        time.sleep(0.4)  # the old lease has expired; the heartbeat is not committed yet

        def claimer() -> None:
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    claim = ClaimRequest(
                        worker="w2", limit=1, lease_ttl_s=60.0, queues=frozenset({"one"})
                    )
                    claimed.extend(hotpaths.claim(conn, claim))
            except BaseException as exc:  # pragma: no cover - shown by the assertion
                errors.append(exc)

        thread = threading.Thread(target=claimer)
        thread.start()
        thread.join(timeout=0.5)  # a claim that does not wait for the heartbeat is done
        beat.commit()
        thread.join(timeout=30)
        assert not thread.is_alive() and errors == []
    assert _live_in(url, "one") <= 1
    assert claimed == []


def _starts_rows_read(conn: psycopg.Connection[Any]) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
        " FROM pg_stat_user_tables WHERE schemaname = 'taskyard' AND relname = 'queue_starts'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_claim_reads_the_starts_of_the_keys_it_walks_not_the_whole_log(
    migrated_postgres_url: str,
) -> None:
    """A per-key rate limit over a long period keeps every start of that period in the
    log (all keys, most of them long idle). A claim needs the starts of the keys it may
    take from, and of the queue's own window: not the whole log on every claim (a cost
    that grows with the throughput times the period, whatever the claim takes)."""
    url = migrated_postgres_url
    services.truncate_taskyard(url)
    limits = QueueLimits(key_rate_limit=RateLimit(count=5, period_s=3600.0))
    idle_keys, starts_each = 2000, 3
    with PostgresJobStore.from_url(url) as store, psycopg.connect(url, autocommit=True) as conn:
        store.set_queue_limits("quota", limits)
        conn.execute(
            "INSERT INTO taskyard.queue_starts (queue, concurrency_key, started_at)"
            " SELECT 'quota', 'idle' || k, now() - interval '1 minute' * n"
            " FROM generate_series(1, %s) AS k, generate_series(1, %s) AS n",
            (idle_keys, starts_each),
        )
        store.enqueue(
            [
                Submission(task="t", queue="quota", concurrency_key=f"busy{n % 3}").to_new_job(
                    job_id=UUID(int=100 + n)
                )
                for n in range(9)
            ]
        )
        request = ClaimRequest(worker="w", limit=2, lease_ttl_s=60.0, queues=frozenset({"quota"}))
        before = _starts_rows_read(conn)
        claimed = hotpaths.claim(conn, request)
        conn.execute("SELECT pg_stat_force_next_flush()")
        assert len(claimed) == 2
    with psycopg.connect(url, autocommit=True) as watcher:
        read = _starts_rows_read(watcher)
    assert read - before < idle_keys, f"one claim read {read - before} rows of the starts log"


def _quota_with_idle_keys(
    store: PostgresJobStore, conn: psycopg.Connection[Any], *, key_quota: int, first_key: int
) -> QueueLimits:
    """Queue `quota` limited to 100 starts a second and `key_quota` a day per key, its log
    holding 3 starts in the last minutes for each of keys `idle<first_key>`..`idle2000`."""
    limits = QueueLimits(
        rate_limit=RateLimit(count=100, period_s=1.0),
        key_rate_limit=RateLimit(count=key_quota, period_s=86_400.0),
    )
    store.set_queue_limits("quota", limits)
    conn.execute(
        "INSERT INTO taskyard.queue_starts (queue, concurrency_key, started_at)"
        " SELECT 'quota', 'idle' || k, now() - interval '1 minute' * n"
        " FROM generate_series(%s::int, 2000) AS k, generate_series(1, 3) AS n",
        (first_key,),
    )
    return limits


def test_listing_the_queues_reads_no_starts_a_queue_rate_does_not_count(
    migrated_postgres_url: str,
) -> None:
    """`GET /v1/queues` (polled by the dashboard) shows each queue's starts within its own
    rate window: it has no need of the per-key starts of a longer period, which the log
    keeps for the claim (every key's starts of a day, under a daily per-key quota)."""
    url = migrated_postgres_url
    services.truncate_taskyard(url)
    with PostgresJobStore.from_url(url) as store, psycopg.connect(url, autocommit=True) as conn:
        limits = _quota_with_idle_keys(store, conn, key_quota=5, first_key=1)
        conn.execute("SELECT pg_stat_force_next_flush()")
        time.sleep(0.05)
        before = _starts_rows_read(conn)
        (info,) = [q for q in store.queues() if q.name == "quota"]
        assert info.usage.started_in_window == 0
        assert info.limits == limits
    with psycopg.connect(url, autocommit=True) as watcher:
        read = _starts_rows_read(watcher)
    assert read - before < 2000, f"listing the queues read {read - before} rows of the log"


def test_a_jobs_waiting_reason_reads_the_starts_of_its_own_key_and_queue_window_only(
    migrated_postgres_url: str,
) -> None:
    """`GET /v1/jobs/{id}` says why a job waits: that needs the queue's starts in its rate
    window and the job's key's in its own, not every key's starts of the longest period."""
    url = migrated_postgres_url
    services.truncate_taskyard(url)
    with PostgresJobStore.from_url(url) as store, psycopg.connect(url, autocommit=True) as conn:
        _quota_with_idle_keys(store, conn, key_quota=3, first_key=0)
        full = Submission(task="t", queue="quota", concurrency_key="idle0").to_new_job(
            job_id=UUID(int=7)
        )
        free = Submission(task="t", queue="quota", concurrency_key="fresh").to_new_job(
            job_id=UUID(int=8)
        )
        store.enqueue([full, free])
        conn.execute("SELECT pg_stat_force_next_flush()")
        time.sleep(0.05)
        before = _starts_rows_read(conn)
        # idle0 used its 3 starts of the day; "fresh" has the room, no worker took it yet.
        assert store.waiting_reason(full.id) == "rate_limit"
        assert store.waiting_reason(free.id) == "no_free_worker"
    with psycopg.connect(url, autocommit=True) as watcher:
        read = _starts_rows_read(watcher)
    assert read - before < 2000, f"two waiting reasons read {read - before} rows of the log"


_BACKOFF = '{"base_seconds": 1, "factor": 2, "max_seconds": 60, "jitter": "none"}'
_JOB_COLUMNS = (
    "id, task, args, queue, priority, run_at, max_attempts, backoff, state, attempt,"
    " attempt_limit, created_at, updated_at, finished_at, concurrency_key"
)


def _insert_jobs(
    conn: psycopg.Connection[Any], first: int, count: int, state: str, queue: str, keys: int | None
) -> None:
    conn.execute(
        f"INSERT INTO taskyard.jobs ({_JOB_COLUMNS})"
        " SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(n), 12, '0'))::uuid, 't', '{}',"
        " %(queue)s, 0, now() - interval '1 hour', 3,"
        " %(backoff)s, %(state)s,"
        " CASE WHEN %(state)s = 'queued' THEN 0 ELSE 1 END, 3,"
        " now() - interval '1 hour', now() - interval '1 hour',"
        " CASE WHEN %(state)s = 'queued' THEN NULL ELSE now() - interval '1 hour' END,"
        " CASE WHEN %(keys)s::integer IS NULL THEN NULL"
        "      ELSE 'k' || lpad((n %% %(keys)s::integer)::text, 5, '0') END"
        " FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n",
        {
            "queue": queue,
            "state": state,
            "backoff": _BACKOFF,
            "keys": keys,
            "first": first,
            "last": first + count - 1,
        },
    )


def _governed_claim_buffers(
    url: str, limits: QueueLimits, backlog: int, keys: int | None, every_queue: bool
) -> int:
    """The shared buffers the nested statements of one governed claim of 100 touch (hit or
    read, as auto_explain reports them), on statistics taken before the backlog arrived."""
    services.truncate_taskyard(url)
    with PostgresJobStore.from_url(url) as store, psycopg.connect(url, autocommit=True) as conn:
        store.set_queue_limits("gov", limits)
        _insert_jobs(conn, 1, 20_000, "succeeded", "gov", keys)
        conn.execute("ANALYZE taskyard.jobs")
        queues = None if every_queue else frozenset({"gov"})
        request = ClaimRequest(worker="w", limit=100, lease_ttl_s=60.0, queues=queues)
        # The session's plans are made now, while nothing is queued (planned once each).
        assert hotpaths.claim(conn, request) == []
        _insert_jobs(conn, 1_000_000, backlog, "queued", "gov", keys)
        conn.execute("VACUUM taskyard.jobs")
        plans: list[str] = []
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET client_min_messages = log",
        ):
            conn.execute(setting)
        claimed = hotpaths.claim(conn, request)
        conn.execute("SET client_min_messages = notice")
        assert len(claimed) == 100
    reads = [
        plan
        for plan in plans
        if "Buffers: shared" in plan
        and not re.search(r"claim_(flow|governed)\(|\b(Update|Insert|Delete) on ", plan)
    ]
    assert len(reads) >= 3, f"auto_explain sent {len(plans)} plans, {len(reads)} reads"
    total = 0
    for plan in reads:
        # The top node's line counts its children's too.
        line = next(line for line in plan.splitlines() if "Buffers: shared" in line)
        total += sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", line))
    return total


@pytest.mark.parametrize(
    ("limits", "keys", "every_queue"),
    [
        (QueueLimits(concurrency_limit=1_000), None, False),
        (QueueLimits(concurrency_limit=1_000, key_concurrency_limit=1), 1_000, False),
        (QueueLimits(concurrency_limit=1_000), None, True),
        (QueueLimits(concurrency_limit=1_000, key_concurrency_limit=1), 1_000, True),
    ],
    ids=["queue-limit", "1000-keys", "every-queue", "every-queue-1000-keys"],
)
def test_a_governed_claims_work_follows_what_it_takes_not_the_backlog_on_stale_statistics(
    migrated_postgres_url: str, limits: QueueLimits, keys: int | None, every_queue: bool
) -> None:
    """Statistics taken when nothing was queued (a burst into a big table does not reach
    autoanalyze's threshold) must not make the governed claim read its whole backlog: the
    work of a claim of 100 (shared buffers of its statements) is the same for a backlog of
    2,000 and of 20,000 (within a quarter; before the lock went by primary key only: 3.1
    times with no keys, 1.7 with 1,000). Nor may a worker of every queue walk the governed
    queue's backlog to find the other queues' jobs (after that fix: 2.4 and 1.6 times)."""
    small = _governed_claim_buffers(migrated_postgres_url, limits, 2_000, keys, every_queue)
    large = _governed_claim_buffers(migrated_postgres_url, limits, 20_000, keys, every_queue)
    assert 4 * large < 5 * small, f"buffers: {small} for 2,000 queued, {large} for 20,000"
