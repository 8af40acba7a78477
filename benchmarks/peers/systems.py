"""The systems the peers benchmark runs, each with its pinned packages, how its workers are
started, and its configurations: its defaults, and one documented "tuned" setting.

To add a row (a variant of a system), add a `Config` to its `configs`. A config changes
only what its workers are started with: extra arguments after the worker command, and
environment variables (which the system's driver module may read, as
`drivers/peers_taskyard.py` reads `PEERS_HANDLERS`: taskyard's `async` row registers its
handlers as `async def` functions).

Ratios are printed against the PgQueuer config of the same name, when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen(kw_only=True)
class Config:
    name: str
    """Short name, used by `--configs` and in the JSON (`defaults`, `tuned`)."""
    label: str
    """What the table's column header says about it."""
    worker_args: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def is_default(self) -> bool:
        return self.name == "defaults"


@attrs.frozen(kw_only=True)
class System:
    key: str
    """The name in `--systems` and of its driver module (`drivers/peers_<key>.py`)."""
    title: str
    requirements: tuple[str, ...]
    """Pinned packages for its own virtualenv; empty for taskyard (the checkout)."""
    worker: tuple[str, ...]
    """The command of one worker process; `{bin}` is the virtualenv's bin folder, `{n}` the
    worker's number (1, 2, ...)."""
    configs: tuple[Config, ...]
    companions: tuple[tuple[str, ...], ...] = ()
    """Processes a deployment runs besides its workers (taskyard's scheduler): started
    with the workers, never killed by the kill scenario, not measured."""
    postgres: bool = False
    """Its jobs live in PostgreSQL: each run gets a database of its own."""
    redis: bool = False
    """It uses Redis: each run gets a Redis database of its own."""

    @property
    def venv_name(self) -> str:
        version = self.requirements[0].split("==")[1] if self.requirements else "checkout"
        return f"{self.key}-{version}"


TASKYARD = System(
    key="taskyard",
    title="taskyard",
    requirements=(),
    worker=("{bin}/taskyard", "worker", "--app", "peers_taskyard:app"),
    companions=(("{bin}/taskyard", "scheduler"),),
    postgres=True,
    redis=True,
    configs=(
        Config(name="defaults", label="defaults: 16 threads per worker"),
        Config(
            name="tuned",
            label="tuned: 2 × 200 threads",  # noqa: RUF001
            worker_args=("--concurrency", "200"),
        ),
        Config(
            name="async",
            label="async def handlers: 100 at once per worker, its default",
            env={"PEERS_HANDLERS": "async"},
        ),
        # Not in the default run: the defaults with claiming ahead on (it is off by default).
        Config(
            name="prefetch4",
            label="defaults but --prefetch 4 (holds up to 4 claimed jobs per lane)",
            worker_args=("--prefetch", "4"),
        ),
        Config(
            name="threads4",
            label="defaults but 4 threads per worker (the default before 16)",
            worker_args=("--concurrency", "4"),
        ),
        Config(
            name="threads32",
            label="defaults but 32 threads per worker",
            worker_args=("--concurrency", "32"),
        ),
        Config(
            name="prefetch16",
            label="defaults but --prefetch 16",
            worker_args=("--prefetch", "16"),
        ),
    ),
)

PGQUEUER = System(
    key="pgqueuer",
    title="PgQueuer",
    # typer is pinned below 0.29: with 0.29, `pgq run` 1.6.0 fails at start on its own
    # default log level ("'str' object has no attribute 'name'").
    requirements=("pgqueuer==1.6.0", "asyncpg==0.32.0", "typer==0.20.0"),
    worker=("{bin}/pgq", "run", "peers_pgqueuer:main"),
    postgres=True,
    configs=(
        Config(name="defaults", label="defaults: batch 10, unlimited asyncio tasks"),
        Config(name="tuned", label="tuned: batch_size=100", worker_args=("--batch-size", "100")),
    ),
)

PROCRASTINATE = System(
    key="procrastinate",
    title="Procrastinate",
    requirements=("procrastinate==3.10.0", "psycopg[binary]==3.3.9", "psycopg-pool==3.3.3"),
    worker=("{bin}/procrastinate", "--app=peers_procrastinate.app", "worker"),
    postgres=True,
    configs=(
        Config(name="defaults", label="defaults: concurrency 1"),
        Config(name="tuned", label="tuned: concurrency 50", worker_args=("--concurrency", "50")),
    ),
)

HUEY = System(
    key="huey",
    title="Huey",
    requirements=("huey==3.5.4", "redis==8.2.0"),
    worker=("{bin}/huey_consumer", "peers_huey.huey"),
    redis=True,
    configs=(
        Config(name="defaults", label="Redis, defaults: 1 worker thread"),
        Config(
            name="tuned", label="tuned: 16 worker threads", worker_args=("-k", "thread", "-w", "16")
        ),
    ),
)

CELERY = System(
    key="celery",
    title="Celery",
    requirements=("celery[redis]==5.7.0", "kombu==5.7.0", "redis==8.2.0"),
    worker=("{bin}/celery", "-A", "peers_celery", "worker", "-n", "peers{n}@%h"),
    redis=True,
    configs=(
        Config(name="defaults", label="Redis broker, defaults: prefork, 1 child per core"),
        Config(
            name="tuned",
            label="tuned: threads pool, 32 threads",
            worker_args=("--pool", "threads", "--concurrency", "32"),
        ),
    ),
)

SYSTEMS: Mapping[str, System] = {
    s.key: s for s in (TASKYARD, PGQUEUER, PROCRASTINATE, HUEY, CELERY)
}
REFERENCE = "pgqueuer"
"""The system taskyard's figures are divided by."""
