"""Server time of each dashboard page with a million jobs in PostgreSQL.

    python benchmarks/ui_pages.py                     # 1,000,000 jobs, median of 9
    python benchmarks/ui_pages.py --jobs 100000 --requests 5 --explain-over-ms 100

Creates a database of its own on the server of --admin-url (dropped at the end, as the
tests' databases are: `tests/services.py`), applies the schema and fills it with
`INSERT ... SELECT ... FROM generate_series`:
90% succeeded (a tenth of those in the last hour, the rest over 30 days), 4% dead (8 tasks
by 5 error types), 4% queued in 4 queues, and scheduled, retrying and cancelled jobs; one
attempt record per finished job. Then it serves the dashboard in this process (the Falcon
app on a `PostgresJobStore`, no token, an in-memory coordinator with two workers) and
times each page's request through Falcon's test client, which is the server's whole work
for it without the network: the median of --requests requests, each with the page cache
emptied first ("cold", what a page costs the store), and the median once it is warm
(what the next browser within the cache's life costs). Pages over --explain-over-ms cold
print the plans of their slowest statements (`auto_explain` on the store's connection).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import LOCAL_POSTGRES, fresh_database

ERROR_TYPES = ("TimeoutError", "ConnectionError", "ValueError", "KeyError", "TaskFailed")

FILL = (
    # succeeded: a tenth in the last hour, the rest over 30 days
    """INSERT INTO taskyard.jobs (id, task, args, queue, priority, run_at, max_attempts,
        backoff, state, attempt, attempt_limit, created_at, updated_at, finished_at, result)
    SELECT gen_random_uuid(), 'task' || (g %% 8), jsonb_build_object('n', g), 'q' || (g %% 4),
        0, t, 3, '{"base_seconds": 1.0, "factor": 2.0, "max_seconds": 300.0, "jitter": "full"}',
        'succeeded', 1, 3, t, t + interval '2 seconds', t + interval '2 seconds', 'null'
    FROM (SELECT g, now() - (CASE WHEN g %% 10 = 0 THEN g %% 3600 ELSE g %% 2592000 END)
                 * interval '1 second' - interval '3 seconds' AS t
          FROM generate_series(1, %(succeeded)s) AS g) AS s""",
    # dead: 8 tasks by 5 error types, a tenth in the last hour
    """INSERT INTO taskyard.jobs (id, task, args, queue, priority, run_at, max_attempts,
        backoff, state, attempt, attempt_limit, created_at, updated_at, finished_at, last_error)
    SELECT gen_random_uuid(), 'task' || (g %% 8), jsonb_build_object('n', g), 'q' || (g %% 4),
        0, t, 3, '{"base_seconds": 1.0, "factor": 2.0, "max_seconds": 300.0, "jitter": "full"}',
        'dead', 3, 3, t, t + interval '2 seconds', t + interval '2 seconds',
        jsonb_build_object('type', (%(types)s::text[])[1 + g %% 5], 'message', 'failed ' || g,
                           'traceback', 'Traceback (most recent call last): ...')
    FROM (SELECT g, now() - (CASE WHEN g %% 10 = 0 THEN g %% 3600 ELSE g %% 2592000 END)
                 * interval '1 second' - interval '3 seconds' AS t
          FROM generate_series(1, %(dead)s) AS g) AS s""",
    """INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at, lease_expires_at,
        finished_at, outcome, error)
    SELECT id, attempt, 'bench', updated_at - interval '2 seconds', updated_at,
        updated_at, CASE WHEN state = 'dead' THEN 'failed' ELSE 'succeeded' END, last_error
    FROM taskyard.jobs WHERE state IN ('succeeded', 'dead')""",
    # waiting and cancelled
    """INSERT INTO taskyard.jobs (id, task, args, queue, priority, run_at, max_attempts,
        backoff, state, attempt, attempt_limit, created_at, updated_at, finished_at)
    SELECT gen_random_uuid(), 'task' || (g %% 8), jsonb_build_object('n', g), 'q' || (g %% 4),
        (g %% 3) - 1,
        CASE st WHEN 'queued' THEN now() - (g %% 600) * interval '1 second'
                ELSE now() + (g %% 86400) * interval '1 second' END,
        3, '{"base_seconds": 1.0, "factor": 2.0, "max_seconds": 300.0, "jitter": "full"}',
        st, CASE st WHEN 'retrying' THEN 1 ELSE 0 END, 3, now() - interval '1 minute', now(),
        CASE st WHEN 'cancelled' THEN now() END
    FROM (SELECT g, CASE WHEN g <= %(queued)s THEN 'queued'
                         WHEN g <= %(queued)s + %(scheduled)s THEN 'scheduled'
                         WHEN g <= %(queued)s + %(scheduled)s + %(retrying)s THEN 'retrying'
                         ELSE 'cancelled' END AS st
          FROM generate_series(1, %(waiting)s) AS g) AS s""",
)


def fill(url: str, jobs: int) -> dict[str, int]:
    shares = {"succeeded": 0.90, "dead": 0.04, "queued": 0.04, "scheduled": 0.01}
    counts = {state: int(jobs * share) for state, share in shares.items()}
    counts["retrying"] = int(jobs * 0.005)
    counts["cancelled"] = jobs - sum(counts.values())
    counts["waiting"] = (
        counts["queued"] + counts["scheduled"] + counts["retrying"] + counts["cancelled"]
    )
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in FILL:
            conn.execute(statement, {**counts, "types": list(ERROR_TYPES)})
        conn.execute("VACUUM ANALYZE")
        rows = conn.execute("SELECT state, count(*) FROM taskyard.jobs GROUP BY state").fetchall()
    return {state: int(n) for state, n in rows}


def build(url: str) -> tuple[Any, Any, Any]:
    """The app (`create_app`, no token) on a PostgresJobStore, in this process; (client, the
    dashboard's shared `Ui`, store)."""
    import falcon.testing

    from taskyard.adapters.clock import SystemClock
    from taskyard.adapters.memory import InMemoryCoordinator
    from taskyard.domain.ports import WorkerInfo
    from taskyard.entrypoints.api import create_app
    from taskyard.entrypoints.bootstrap import bootstrap
    from taskyard.entrypoints.config import Settings

    clock = SystemClock()
    coordinator = InMemoryCoordinator(clock)
    for n in range(2):
        coordinator.register_worker(
            WorkerInfo(
                id=f"bench:{n}",
                host="bench",
                pid=n,
                queues=(),
                concurrency=8,
                started_at=clock.now(),
                last_heartbeat_at=clock.now(),
            ),
            ttl_s=3600,
        )
    system = bootstrap(Settings(database_url=url), coordinator=coordinator, clock=clock)
    services = system.services()
    store = system.store
    app = create_app(services)
    found = app._router.find("/ui")  # the overview page holds the `Ui` every page shares
    assert found is not None
    return falcon.testing.TestClient(app), found[0].ui, store


def timed(client: Any, ui: Any, path: str, *, cold: bool) -> tuple[float, int]:
    """One request's time. Cold: after the caches of what a request computes itself (queue
    counts, dead letters) were emptied and any background computation a page started has
    ended, so only the request's own work is counted. The chart's cache is kept: the chart
    is only ever computed in the background (`TtlCache.peek`), and that work is timed
    apart; emptying it would have each cold request wait for it behind the benchmark's one
    store connection."""
    assert ui.views.wait_idle(300)
    if cold:
        ui.views._queues.clear()
        ui.views._dead.clear()
    started = time.perf_counter()
    result = client.simulate_get(path)
    return (time.perf_counter() - started) * 1000, result.status_code


def explain(store: Any, client: Any, ui: Any, path: str, over_ms: float) -> list[str]:
    """The plans of the statements of one cold request that took over `over_ms`, as
    auto_explain reports them on the store's own (single) connection."""
    plans: list[str] = []
    # The store's pool is private; a benchmark may reach in to watch its one connection.
    with store._pool.connection() as conn:
        conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        for statement in (
            "LOAD 'auto_explain'",
            f"SET auto_explain.log_min_duration = {int(over_ms / 4)}",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET auto_explain.log_nested_statements = on",
            "SET client_min_messages = log",
        ):
            conn.execute(statement)
    timed(client, ui, path, cold=True)
    assert ui.views.wait_idle(300)  # and whatever it started in the background
    with store._pool.connection() as conn:
        conn.execute("RESET ALL")
    return plans


def measure(url: str, args: argparse.Namespace) -> None:
    from taskyard.entrypoints.ui.views import SERIES_CACHE_S

    client, ui, store = build(url + "?pool_max_size=1&pool_min_size=1")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id FROM taskyard.jobs WHERE state = 'dead' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        version = conn.info.server_version
    assert row is not None
    print(f"PostgreSQL {version // 10000}.{version % 10000}, {os.cpu_count()} CPUs")
    pages = [
        "/ui",
        "/ui/jobs",
        "/ui/jobs?state=dead",
        "/ui/jobs?queue=q3&task=task3",
        "/ui/jobs?queue=q1&task=task3",
        "/ui/jobs?q=no-such-key",
        f"/ui/jobs/{row[0]}",
        "/ui/queues",
        "/ui/workers",
        "/ui/dead",
        "/ui/jobs/bulk?action=retry&state=dead&queue=q2",
        "/ui/jobs/bulk?action=retry&task=task5",
    ]
    timed(client, ui, "/ui", cold=True)  # connect, warm the catalogue, start the chart
    assert ui.views.wait_idle(300)
    ui.views._series.ttl_s = 1e9  # the chart stays fresh for the run: it is timed apart
    print(f"\n--- server time per page, ms: median of {args.requests} (min..max) ---")
    print(f"{'page':58} {'cold':>22} {'warm':>8} status")
    series_ms = []
    for _ in range(3):
        started = time.perf_counter()
        ui.views._compute_series()
        series_ms.append((time.perf_counter() - started) * 1000)
    print(
        f"in the background: the overview's chart, once per {SERIES_CACHE_S:.0f} s per "
        f"process while a dashboard is open: {statistics.median(series_ms):.0f} ms "
        f"(median of 3)"
    )
    slow = []
    for path in pages:
        cold = [timed(client, ui, path, cold=True) for _ in range(args.requests)]
        warm = [timed(client, ui, path, cold=False) for _ in range(args.requests)]
        cold_ms = [ms for ms, _ in cold]
        median = statistics.median(cold_ms)
        shown = f"{median:8.1f} ({min(cold_ms):.0f}..{max(cold_ms):.0f})"
        warm_ms = statistics.median(ms for ms, _ in warm)
        print(f"{path[:58]:58} {shown:>22} {warm_ms:8.1f} {cold[0][1]}", flush=True)
        if median > args.explain_over_ms:
            slow.append(path)
    for path in slow:
        print(f"\n--- {path}: statements over {args.explain_over_ms / 4:.0f} ms ---")
        for plan in explain(store, client, ui, path, args.explain_over_ms):
            print(plan)
    store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--admin-url", default=os.environ.get("TASKYARD_TEST_DATABASE_URL", LOCAL_POSTGRES)
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=9)
    parser.add_argument("--explain-over-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    assert args.jobs >= 1000 and args.requests >= 1

    from taskyard.adapters.postgres import migrate

    with fresh_database(args.admin_url, prefix="taskyard_uibench") as url:
        migrate(url)
        print(f"filling {args.jobs:,} jobs", flush=True)
        started = time.monotonic()
        counts = fill(url, args.jobs)
        print(f"filled in {time.monotonic() - started:.1f} s: {counts}", flush=True)
        measure(url, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
