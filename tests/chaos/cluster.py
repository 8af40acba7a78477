"""The production topology as real processes, for the nemesis to strike: one `api` under
gunicorn, two `scheduler`s and four `worker`s on the machine's PostgreSQL (a database of
the test's own) and a throwaway `redis-server`. Process plumbing is `tests/e2e/harness.py`.

Every process that ever ran is kept (`every_worker`), so that its log can be read at the
end, killed ones included.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import psycopg

from tests.e2e.harness import Api, Proc, Procs, clean_environment, free_port
from tests.eventually import eventually
from tests.services import ThrowawayRedis

POOL_MAX_SIZE = 4
"""Connections per process: the machine's PostgreSQL is shared (`max_connections` 100)."""
LEADER_DEADLINE_S = 15.0


@attrs.frozen(kw_only=True)
class Topology:
    workers: int = 4
    schedulers: int = 2
    concurrency: int = 8
    lease_ttl_s: float = 2.0
    leader_ttl_s: float = 2.0
    poll_interval_s: float = 0.2
    grace_period_s: float = 5.0


class Cluster:
    def __init__(
        self,
        procs: Procs,
        *,
        database_url: str,
        redis: ThrowawayRedis,
        queue: str,
        topology: Topology,
        redis_key_prefix: str = "chaos:",
        process_database_url: str | None = None,
    ) -> None:
        """`process_database_url`: the URL the api, schedulers and workers use (PgBouncer's,
        say); by default `database_url` with a small pool. `migrate` and the nemesis
        always use `database_url`."""
        self.procs = procs
        self.database_url = database_url
        self.redis = redis
        self.queue = queue
        self.topology = topology
        self.env: Mapping[str, str] = clean_environment(
            TASKYARD_DATABASE_URL=process_database_url
            or f"{database_url}?pool_max_size={POOL_MAX_SIZE}",
            TASKYARD_REDIS_URL=redis.url,
            TASKYARD_REDIS_KEY_PREFIX=redis_key_prefix,
            TASKYARD_LOG_FORMAT="json",
            TASKYARD_LEASE_TTL_SECONDS=str(topology.lease_ttl_s),
            TASKYARD_LEADER_TTL_SECONDS=str(topology.leader_ttl_s),
            TASKYARD_POLL_INTERVAL_SECONDS=str(topology.poll_interval_s),
            TASKYARD_GRACE_PERIOD_SECONDS=str(topology.grace_period_s),
        )
        self.api_proc: Proc | None = None
        self.api_url = ""
        self.workers: list[Proc] = []
        self.schedulers: list[Proc] = []
        self.every_worker: list[Proc] = []
        self._ids: dict[int, str] = {}
        """Process id (as printed) by OS pid."""
        self._started = 0
        self._nemesis_conn: psycopg.Connection[Any] | None = None
        self._api: Api | None = None

    # --- starting -------------------------------------------------------------------------

    def start(self) -> None:
        migrate_env = {**self.env, "TASKYARD_DATABASE_URL": self.database_url}
        assert "taskyard schema at version" in self.procs.run(["migrate"], env=migrate_env)
        port = free_port()
        self.api_proc = self._start(
            "api", ["api", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"]
        )
        self.api_url = f"http://127.0.0.1:{port}"
        self.schedulers = [self._start_scheduler() for _ in range(self.topology.schedulers)]
        self.workers = [self._start_worker() for _ in range(self.topology.workers)]
        for proc in [*self.schedulers, *self.workers]:
            self._ids[proc.pid] = proc.process_id()
        self._api = Api(self.api_url)
        self._api.wait_ready()
        self._nemesis_conn = psycopg.connect(
            self.database_url, autocommit=True, application_name="taskyard-chaos-nemesis"
        )

    def _start(self, name: str, args: list[str]) -> Proc:
        self._started += 1
        return self.procs.start(f"{self._started:03d}-{name}", args, env=self.env)

    def _start_worker(self) -> Proc:
        proc = self._start(
            "worker",
            ["worker", "--queues", self.queue, "--concurrency", str(self.topology.concurrency)],
        )
        self.every_worker.append(proc)
        return proc

    def _start_scheduler(self) -> Proc:
        return self._start("scheduler", ["scheduler"])

    def _up(self, proc: Proc) -> Proc:
        self._ids[proc.pid] = proc.process_id()  # waits for its banner
        return proc

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
        if self._nemesis_conn is not None:
            self._nemesis_conn.close()

    # --- what the nemesis does (tests/chaos/nemesis.py: Target) -----------------------------

    def store_now(self) -> datetime:
        assert self._nemesis_conn is not None
        row = self._nemesis_conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        moment: datetime = row[0]
        return moment.astimezone(UTC)

    def worker_id(self, slot: int) -> str:
        return self._ids[self.workers[slot].pid]

    def kill_worker(self, slot: int) -> None:
        self.workers[slot].kill()
        self.workers[slot] = self._up(self._start_worker())

    def signal_worker(self, slot: int, signum: int) -> None:
        self.workers[slot].send(signum)

    def leader(self) -> str | None:
        assert self._api is not None
        status, doc = self._api.call("GET", "/v1/schedulers")
        if status != 200:
            return None
        leaders = [s["id"] for s in doc["schedulers"] if s["leader"]]
        assert len(leaders) <= 1, leaders
        return leaders[0] if leaders else None

    def wait_leader(self) -> str:
        return self.wait_leader_other_than(None)

    def wait_leader_other_than(self, scheduler_id: str | None) -> str:
        found: list[str] = []

        def leads() -> bool:
            leader = self.leader()
            if leader is not None and leader != scheduler_id:
                found.append(leader)
                return True
            return False

        eventually(leads, timeout_s=LEADER_DEADLINE_S, what=f"a leader other than {scheduler_id}")
        return found[-1]

    def scheduler_ids(self) -> list[str]:
        """The ids of the schedulers running now."""
        return [self._ids[p.pid] for p in self.schedulers]

    def kill_scheduler(self, scheduler_id: str) -> None:
        [slot] = [i for i, p in enumerate(self.schedulers) if self._ids[p.pid] == scheduler_id]
        self.schedulers[slot].kill()
        self.schedulers[slot] = self._up(self._start_scheduler())

    def stop_redis(self) -> None:
        self.redis.stop()

    def start_redis(self) -> None:
        self.redis.start()

    def flush_redis(self) -> None:
        self.redis.flushall()

    def terminate_backends(self) -> int:
        """Only backends of this test's own database, and never the nemesis's connection."""
        assert self._nemesis_conn is not None
        row = self._nemesis_conn.execute(
            """
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
            FROM pg_stat_activity
            WHERE datname = current_database()
              AND pid <> pg_backend_pid()
              AND backend_type = 'client backend'
            """
        ).fetchone()
        assert row is not None
        count: int = row[0]
        return count

    # --- healing and stopping ---------------------------------------------------------------

    def heal(self) -> list[str]:
        """Redis up, every worker running (not stopped), every process slot alive. Returns
        what exited on its own (the nemesis restarts what it kills at once, so nothing
        should have): name, exit code and the tail of its log."""
        if not self.redis.running:
            self.redis.start()
        for proc in self.workers:
            proc.send(signal.SIGCONT)
        exited = [
            f"{proc.name} exited {proc.process.returncode}:\n{proc.stderr()[-2000:]}"
            for proc in [self.api_proc, *self.schedulers, *self.workers]
            if proc is not None and proc.process.poll() is not None
        ]
        for slot, proc in enumerate(self.workers):
            if proc.process.poll() is not None:
                self.workers[slot] = self._up(self._start_worker())
        for slot, proc in enumerate(self.schedulers):
            if proc.process.poll() is not None:
                self.schedulers[slot] = self._up(self._start_scheduler())
        return exited

    def stop(self) -> dict[str, int]:
        """SIGTERM every live process; their exit codes, by name."""
        live = [p for p in [self.api_proc, *self.schedulers, *self.workers] if p is not None]
        for proc in live:
            proc.send(signal.SIGTERM)
        return {proc.name: proc.wait() for proc in live}

    def worker_log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line of every worker that ran (a killed one's cut-off last line is
        left out by `Proc.log_lines`)."""
        return [line for proc in self.every_worker for line in proc.log_lines()]
