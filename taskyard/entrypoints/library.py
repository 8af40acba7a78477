"""The Python library: an app object, task registration, enqueue and job management.

    import taskyard

    app = taskyard.App()        # settings from TASKYARD_* and taskyard.toml, as a process
    app = taskyard.App("postgresql://localhost/jobs", coordinator_url="redis://localhost")

    @app.task(queue="billing", max_attempts=5, timeout=60)
    def send_invoice(invoice_id: int) -> None: ...

    job = send_invoice.enqueue(invoice_id=42)
    job = app.enqueue("send_invoice", args={"invoice_id": 42}, delay_seconds=30)

An app reads the settings an enqueue depends on as the processes do (`config.APP_SETTINGS`):
the store, the Redis URL and key prefix, and what the built-in tasks may name. Each comes
from the constructor's argument, else the environment (`TASKYARD_DATABASE_URL`,
`TASKYARD_REDIS_URL`, `TASKYARD_REDIS_KEY_PREFIX`, ...), else `taskyard.toml`; without any,
the store is `memory://` and doorbells ring only inside this process. They are read when
the app is made; the store and coordinator are built by the composition root
(`bootstrap`) on first use, never at import time. `taskyard.testing.TestRunner` swaps in
an in-memory store and a manual clock for a test.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import (
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    Unpack,
    cast,
    overload,
)
from uuid import UUID

import attrs

from taskyard.adapters.executors import builtin_tasks
from taskyard.domain import contract, retention
from taskyard.domain.builtins import BUILTIN_TASKS, BuiltinPolicy
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.client import Client, bells
from taskyard.domain.context import JobContext, Registry, TaskSpec
from taskyard.domain.errors import (
    CoordinatorUnavailable,
    JobNotFound,
    TaskyardError,
)
from taskyard.domain.flow import NO_LIMITS, WEIGHT_DEFAULT, RateLimit, parse_limits
from taskyard.domain.hooks import Hook, Hooks
from taskyard.domain.ids import parse_job_id
from taskyard.domain.model import Attempt, Enqueued, Job, JobState
from taskyard.domain.ports import Clock, Coordinator, JobFilter, JobPage, JobQuery, JobStore, Random
from taskyard.domain.queue_settings import check_queue_name
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.schedules import ScheduleSpec, parse_schedule
from taskyard.domain.submission import Submission, parse_submission
from taskyard.entrypoints import bootstrap, config

log = logging.getLogger("taskyard.app")

P = ParamSpec("P")
R = TypeVar("R")

_UNSET: Any = object()


class Options(TypedDict, total=False):
    """Submission options that override a task's defaults for one enqueue (api.md's fields;
    `backoff` may be a `RetryPolicy` or a partial mapping; `depends_on` takes jobs or ids)."""

    queue: str
    priority: int
    run_at: datetime
    delay_seconds: float
    max_attempts: int
    backoff: RetryPolicy | Mapping[str, Any]
    timeout_seconds: float
    idempotency_key: str
    depends_on: Iterable[UUID | str | Job]
    concurrency_key: str


class Task(Generic[P, R]):
    """A registered handler. Calling it runs the function directly; `enqueue` submits a job.

    `P` is what a job of it takes (the handler's parameters but its context), so a type
    checker checks `send_welcome.enqueue(user_id=1)` as it checks a call of the function;
    `R` is what the function returns."""

    def __init__(self, app: App, spec: TaskSpec, func: Callable[..., R]) -> None:
        self.app = app
        self.spec = spec
        self.func = func
        self.name = spec.name
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.func(*args, **kwargs)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Submit a job of this task with these arguments (by name, or by position as the
        function takes them) and the task's defaults. Raises `ValidationError` naming each
        argument the function does not take or lacks."""
        return Bound(self, {}).enqueue(*args, **kwargs)

    def options(self, *, connection: Any = None, **options: Unpack[Options]) -> Bound[P, R]:
        """`send_invoice.options(delay_seconds=60, priority=5).enqueue(invoice_id=42)`;
        `connection=conn` enqueues inside the caller's transaction (see `App.enqueue`)."""
        return Bound(self, options, connection)

    def __repr__(self) -> str:
        return f"<taskyard task {self.name}>"


@attrs.frozen
class Bound(Generic[P, R]):
    """A task with options for one enqueue (`task.options(...)`)."""

    task: Task[P, R]
    options: Options
    connection: Any = None

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        connection = self.connection
        if "connection" in kwargs and "connection" not in self.task.spec.params.names:
            # `options(...).enqueue(..., connection=conn)`: the handler takes no argument of
            # that name, so it is the transaction's connection (typed: `options(connection=)`).
            connection = kwargs.pop("connection")
        try:
            args_by_name = self.task.spec.params.bind(args, kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.task.name}.enqueue() {exc}") from None
        return self.task.app.enqueue(
            self.task.name, args=args_by_name, connection=connection, **self.options
        )


class _Register(Protocol):
    """What `@app.task(...)` does to a function: a handler that takes the context first
    (`ctx: JobContext`) makes a task whose jobs take the rest of its parameters. (A context
    elsewhere is handed in all the same, but typing cannot take it out of `P`.)"""

    @overload
    def __call__(self, func: Callable[Concatenate[JobContext, P], R], /) -> Task[P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Task[P, R]: ...


def _job_id(value: UUID | str | Job) -> UUID:
    if isinstance(value, Job):
        return value.id
    if isinstance(value, UUID):
        return value
    parsed = parse_job_id(value)
    if parsed is None:
        raise JobNotFound(value)
    return parsed


WAIT_POLL_S_MIN = 0.01
WAIT_POLL_S_MAX = 1.0
"""A wait looks at the store at least this often (as an idle worker does by default)."""


class WaitTimeout(TaskyardError, TimeoutError):
    """`App.wait` ran out of time: `job` is the job as last seen, not finished."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} has not finished: it is {job.state.value}")
        self.job = job


def _in_transaction(connection: Any) -> bool:
    """Whether a psycopg connection is inside a transaction (not yet committed)."""
    from psycopg.pq import TransactionStatus

    return bool(connection.info.transaction_status is not TransactionStatus.IDLE)


def _finished_mark(coordinator: Coordinator | None) -> str | None:
    """Where the finished bell stands, or None without a coordinator to hear it from."""
    if coordinator is None:
        return None
    try:
        return coordinator.finished_mark()
    except CoordinatorUnavailable:
        return None


DATABASE_URL_DEFAULT = "memory://"
REDIS_URL_DEFAULT = "memory://"
"""Without a Redis URL, an app rings doorbells only inside its own process."""


class App:
    """Tasks (`app.tasks`, the registry a worker uses), and a handle on the store."""

    def __init__(
        self,
        url: str | None = None,
        *,
        coordinator_url: str | None = None,
        redis_key_prefix: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        builtins: BuiltinPolicy | None = None,
        include_builtins: bool = True,
    ) -> None:
        """`url` is the store, `coordinator_url` Redis (or `memory://`), `redis_key_prefix`
        the prefix of its keys; each not given (None) comes from the environment, else
        `taskyard.toml`, as for the processes. A bad value raises `ConfigError` naming
        where it was written: the argument, the variable or the key of the file."""
        self.settings: config.Settings = config.resolve(
            None,
            config.APP_SETTINGS,
            defaults={"database_url": DATABASE_URL_DEFAULT, "redis_url": REDIS_URL_DEFAULT},
            given={
                "database_url": (url, "App(url=...)"),
                "redis_url": (coordinator_url, "App(coordinator_url=...)"),
                "redis_key_prefix": (redis_key_prefix, "App(redis_key_prefix=...)"),
            },
        )
        """The settings this app resolved (`settings.sources` says where each came from)."""
        self.clock: Clock = clock if clock is not None else bootstrap.wall_clock()
        self.rng: Random = rng if rng is not None else bootstrap.system_random()
        self.builtins = builtins or bootstrap.builtin_policy(self.settings)
        self.tasks = Registry()
        self.hooks = Hooks()
        """Lifecycle hooks (`add_hook`): around each enqueue here, and each attempt of a
        worker that loads this app."""
        if include_builtins:
            for spec in builtin_tasks(self.builtins).values():
                self.tasks.add(spec)
        self._given: dict[str, Any] = {}
        """Adapters handed to `use`: the app runs on them instead of building its own."""
        self._system: bootstrap.System | None = None
        self._retired: list[bootstrap.System] = []
        """Systems `use` replaced: what they built is closed by `close`."""
        self._warned: set[str] = set()
        """Tasks this app has warned of enqueuing while nobody published them."""
        self._plain: dict[str, tuple[TaskSpec, Submission]] = {}
        self._infos: dict[str, tuple[TaskSpec, TaskInfo]] = {}
        """Made once per registered task (`_plain_submission`, `_task_info`)."""
        self._unrung: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        """Queues that got due jobs in a caller's transaction not yet committed, by its
        connection: their doorbells ring when it commits (`committed`)."""

    @property
    def url(self) -> str:
        """The store's URL."""
        url = self.settings.database_url
        assert url is not None
        return url

    @property
    def coordinator_url(self) -> str | None:
        """Redis's URL (`memory://`: doorbells ring inside this process only)."""
        return self.settings.redis_url

    # --- wiring -------------------------------------------------------------------------

    def _wired(self) -> bootstrap.System:
        if self._system is None:
            self._system = bootstrap.bootstrap(
                self.settings,
                clock=self.clock,
                rng=self.rng,
                builtins=self.builtins,
                **self._given,
            )
        return self._system

    @property
    def store(self) -> JobStore:
        return self._wired().store

    @property
    def coordinator(self) -> Coordinator | None:
        return self._wired().coordinator

    @property
    def client(self) -> Client:
        return self._wired().client

    def close(self) -> None:
        """Close the store and coordinator this app built (a PostgreSQL pool, Redis
        connections), never those handed to `use`. Using the app again builds them
        afresh."""
        systems, self._retired = self._retired, []
        if self._system is not None:
            systems.append(self._system)
            self._system = None
        for system in systems:
            system.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def use(
        self,
        *,
        store: JobStore,
        coordinator: Coordinator | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
    ) -> None:
        """Run this app on the given adapters (tests, the simulator): they are wired
        through the composition root as the app's own would be. Without `coordinator`,
        the app's settings name one."""
        self._given = {"store": store}
        if coordinator is not None:
            self._given["coordinator"] = coordinator
        if clock is not None:
            self.clock = clock
        if rng is not None:
            self.rng = rng
        self._retire()

    def _retire(self) -> None:
        """Set the current system aside; what it built is closed by `close`."""
        if self._system is not None and self._system.owned:
            self._retired.append(self._system)
        self._system = None

    def _snapshot(self) -> tuple[Any, ...]:
        """What `use` changes, for `TestRunner` to put back."""
        return (self._given, self._system, self.clock, self.rng)

    def _restore(self, snapshot: tuple[Any, ...]) -> None:
        if self._system is not snapshot[1]:
            self._retire()
        self._given, self._system, self.clock, self.rng = snapshot

    # --- the registry -------------------------------------------------------------------

    def add_hook(self, hook: Hook) -> Hook:
        """Add a lifecycle hook (a `taskyard.Hook`; see `taskyard/domain/hooks.py`): called
        around each enqueue through this app, and around each attempt in every worker that
        loads it, after those added before. What a hook raises is logged and ignored."""
        self.hooks.add(hook)
        return hook

    def task(
        self,
        name: str | None = None,
        *,
        queue: str = "default",
        max_attempts: int = 3,
        backoff: RetryPolicy | Mapping[str, Any] | None = None,
        timeout: float | None = None,
        priority: int = 0,
    ) -> _Register:
        """Register a handler. Its defaults apply to every enqueue that does not override
        them, and a job's args are checked against its parameters at enqueue."""

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f"{func.__module__}.{func.__qualname__}"
            if task_name in BUILTIN_TASKS:
                raise ValueError(f"{task_name!r} is the name of a built-in task")
            policy = self._parse_policy(backoff) if backoff is not None else RetryPolicy()
            defaults = self._validated(
                {
                    "task": task_name,
                    "queue": queue,
                    "max_attempts": max_attempts,
                    "backoff": policy,
                    "timeout_seconds": timeout,
                    "priority": priority,
                }
            )
            spec = TaskSpec(
                name=task_name,
                handler=func,
                queue=defaults.queue,
                max_attempts=defaults.max_attempts,
                backoff=defaults.backoff,
                timeout_s=defaults.timeout_s,
                priority=defaults.priority,
            )
            self.tasks.add(spec)
            return Task(self, spec, func)

        return cast(_Register, register)

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        timezone: str = "UTC",
        args: Mapping[str, Any] | None = None,
        name: str | None = None,
        catch_up: str = contract.CATCH_UP_DEFAULT,
        catch_up_window: timedelta | float = contract.CATCH_UP_WINDOW_S_DEFAULT,
        overlap: str = contract.OVERLAP_DEFAULT,
    ) -> Callable[[Task[P, R]], Task[P, R]]:
        """Fire a task on a schedule: at the times of `cron` (five fields, read in
        `timezone`) or `every` (a `timedelta` or seconds), with `args`. Goes above
        `@app.task`. The schedule (named `name`, else the task's name) is written to the
        store when a worker of this app starts; its job gets the task's defaults. Checked
        here as `POST /v1/schedules` checks it (`ValidationError` naming the field)."""

        def seconds(value: timedelta | float) -> float:
            return value.total_seconds() if isinstance(value, timedelta) else float(value)

        def register(task: Task[P, R]) -> Task[P, R]:
            spec = task.spec
            data: dict[str, Any] = {
                "name": name or spec.name,
                "task": spec.name,
                "args": dict(args or {}),
                "timezone": timezone,
                "catch_up": catch_up,
                "catch_up_window_seconds": seconds(catch_up_window),
                "overlap": overlap,
                "queue": spec.queue,
                "priority": spec.priority,
                "max_attempts": spec.max_attempts,
                "backoff": spec.backoff,
                "timeout_seconds": spec.timeout_s,
            }
            if cron is not None:
                data["cron"] = cron
            if every is not None:
                data["every_seconds"] = seconds(every)
            schedule, _ = parse_schedule(data)
            self.tasks.add_schedule(schedule)
            return task

        return register

    @property
    def schedules(self) -> list[ScheduleSpec]:
        """The schedules this app declares (`periodic`)."""
        return self.tasks.schedules()

    def _parse_policy(self, value: RetryPolicy | Mapping[str, Any]) -> RetryPolicy:
        if isinstance(value, RetryPolicy):
            return value
        return self._validated({"task": "x", "backoff": dict(value)}).backoff

    def _validated(self, data: Mapping[str, Any]) -> Submission:
        """A task's declared defaults, checked as a submission's fields are."""
        clean = {k: v for k, v in data.items() if v is not None}
        return parse_submission(clean, check_args=self.builtins.check)

    # --- submission ---------------------------------------------------------------------

    def submission(
        self,
        task: str | Task[Any, Any],
        *,
        args: Mapping[str, Any] | None = None,
        **options: Unpack[Options],
    ) -> Submission:
        """Validate one submission, filling the task's defaults; raises `ValidationError`."""
        name = task.name if isinstance(task, Task) else task
        if not options and isinstance(name, str):
            base = self._plain_submission(name)
            if base is not None:
                return self.client.with_args(base, dict(args or {}), local=self._task_info)
        data: dict[str, Any] = {"task": name, "args": dict(args or {})}
        explicit: dict[str, Any] = dict(options)
        depends_on = explicit.pop("depends_on", ())
        data.update({k: v for k, v in explicit.items() if v is not None})
        deps = [d.id if isinstance(d, Job) else d for d in depends_on]
        if deps:
            data["depends_on"] = deps
        submission = self.client.parse(data, local=self._task_info)
        if name not in self._warned and self.client.unknown([submission], self._task_info):
            self._warned.add(name)
            log.warning(
                "%r is no task of this app, and no worker has published it: its jobs wait "
                "until a worker that has it starts",
                name,
            )
        return submission

    def _plain_submission(self, name: str) -> Submission | None:
        """A submission of a task registered here (not built in) with its defaults and no
        args, validated once per registration: a submission that sets nothing but args is
        this one with its args checked (`Client.with_args`), not a whole parse per job.
        None for any other task (its defaults come from the catalog, which may change)."""
        spec = self.tasks.get(name)
        if spec is None or name in BUILTIN_TASKS:
            return None
        cached = self._plain.get(name)
        if cached is None or cached[0] is not spec:
            cached = (spec, self.client.plain(name, local=self._task_info))
            self._plain[name] = cached
        return cached[1]

    def _task_info(self, name: str) -> TaskInfo | None:
        """A task's defaults and parameters, when registered here (before the catalog's);
        made once per registration."""
        spec = self.tasks.get(name)
        if spec is None:
            return None
        cached = self._infos.get(name)
        if cached is None or cached[0] is not spec:
            cached = (spec, spec.info())
            self._infos[name] = cached
        return cached[1]

    def enqueue(
        self,
        task: str | Task[Any, Any],
        *,
        args: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        connection: Any = None,
        **options: Unpack[Options],
    ) -> Job:
        """Submit one job. When this returns, the job is durable.

        With the same `idempotency_key` and the same submission, the existing job is
        returned; with a different submission, `IdempotencyConflict` is raised.
        `connection` (PostgreSQL only): write through this psycopg connection, inside the
        caller's transaction, so the job commits or rolls back with it.
        """
        submission = self.submission(task, args=args, **options)
        return self.enqueue_many(
            [submission], correlation_id=correlation_id, connection=connection
        )[0].job

    def enqueue_many(
        self,
        submissions: Sequence[Submission],
        *,
        correlation_id: str | None = None,
        connection: Any = None,
    ) -> list[Enqueued]:
        """Submit several validated submissions (see `submission`), all or nothing, inside
        the hooks' `enqueue` (the jobs keep the trace context it gives)."""
        with self.hooks.enqueue([s.task for s in submissions]) as trace_context:
            if connection is None:
                return self.client.submit(
                    submissions, correlation_id=correlation_id, trace_context=trace_context
                )
            enqueue_in = getattr(self.store, "enqueue_in", None)
            if enqueue_in is None:
                raise TypeError(f"transactional enqueue needs a PostgreSQL store, not {self.url}")
            new_jobs = self.client.prepare(
                submissions, correlation_id=correlation_id, trace_context=trace_context
            )
            jobs: list[Enqueued] = enqueue_in(connection, new_jobs)
            self._unrung.setdefault(connection, set()).update(bells(jobs))
            if not _in_transaction(connection):
                self.committed(connection)  # an autocommit connection: committed already
            return jobs

    # --- transactions -------------------------------------------------------------------

    def committed(self, connection: Any) -> None:
        """The caller's transaction on `connection` committed: wake the workers of the
        queues its enqueues made jobs due in. `transaction()` and the Django helper call it
        for you; call it after your own `commit()` (without it, workers find the jobs at
        their next poll)."""
        queues = self._unrung.pop(connection, set())
        self.client.ring(sorted(queues))

    @contextlib.contextmanager
    def transaction(self, connection: Any) -> Iterator[Any]:
        """`with app.transaction(conn): ...` is psycopg's `with conn.transaction(): ...`
        that, once the outermost block has committed, wakes the workers of the jobs
        enqueued in it (`enqueue(..., connection=conn)`). A block rolled back wakes none."""
        try:
            with connection.transaction() as tx:
                yield tx
        except BaseException:
            if not _in_transaction(connection):
                self._unrung.pop(connection, None)  # rolled back, all of it
            raise
        if not _in_transaction(connection):
            self.committed(connection)

    # --- reading and managing -----------------------------------------------------------

    def get(self, job_id: UUID | str | Job) -> Job:
        return self.store.get(_job_id(job_id))

    def attempts(self, job_id: UUID | str | Job) -> list[Attempt]:
        return self.store.attempts(_job_id(job_id))

    def cancel(self, job_id: UUID | str | Job) -> Job:
        return self.client.cancel(_job_id(job_id))

    def retry(self, job_id: UUID | str | Job) -> Job:
        return self.store.retry(_job_id(job_id))

    def set_retention(
        self,
        queue: str,
        *,
        succeeded: int | None = None,
        dead: int | None = None,
        cancelled: int | None = None,
    ) -> dict[str, int]:
        """Keep this queue's finished jobs for these many seconds after they finished (0:
        forever), replacing its earlier override whole; a state given as None follows the
        scheduler's setting (`TASKYARD_RETENTION_*_SECONDS`). Returns the override as
        stored. Raises `ValidationError` naming a bad value."""
        check_queue_name(queue)
        periods = retention.parse_periods(
            {"succeeded": succeeded, "dead": dead, "cancelled": cancelled}
        )
        self.store.set_retention(queue, periods)
        return {state.value: seconds for state, seconds in periods.items()}

    def set_queue_limits(
        self,
        queue: str,
        *,
        concurrency_limit: int | None = None,
        key_concurrency_limit: int | None = None,
        rate_limit: RateLimit | Mapping[str, Any] | None = None,
        key_rate_limit: RateLimit | Mapping[str, Any] | None = None,
        weight: int = WEIGHT_DEFAULT,
    ) -> dict[str, Any]:
        """Limit this queue, replacing its earlier limits whole (None: no such limit; its
        own retention is `set_retention`'s): at most `concurrency_limit` of its jobs running
        at once across every worker, `key_concurrency_limit` per `concurrency_key`, and at
        most `rate_limit.count` starts in any `rate_limit.period_s` seconds (a `RateLimit`,
        or `{"count": n, "period_seconds": s}`) for the queue, `key_rate_limit` per key;
        `weight` is its share against other queues. `set_queue_limits(queue)` removes them.
        `taskyard.RateLimit(count=100, period_s=60)`: 100 starts in any minute.
        Returns the limits as stored, as `GET /v1/queues/{name}` shows them. Raises
        `ValidationError` naming a bad value."""
        check_queue_name(queue)

        def rate(value: RateLimit | Mapping[str, Any] | None) -> Any:
            return value.to_json() if isinstance(value, RateLimit) else value

        limits = parse_limits(
            {
                "concurrency_limit": concurrency_limit,
                "key_concurrency_limit": key_concurrency_limit,
                "rate_limit": rate(rate_limit),
                "key_rate_limit": rate(key_rate_limit),
                "weight": weight,
            }
        )
        self.store.set_queue_limits(queue, limits)
        self.client.ring([queue])  # room may have opened: idle workers look again
        return self.queue_limits(queue)

    def queue_limits(self, queue: str) -> dict[str, Any]:
        """The queue's limits as the store keeps them (no limit, weight 1, for a queue
        without), as `set_queue_limits` returns them."""
        check_queue_name(queue)
        return self.store.queue_limits().get(queue, NO_LIMITS).to_json()

    def wait(self, job: UUID | str | Job, *, timeout: float | None = None) -> Job:
        """Block until the job has finished (succeeded, dead or cancelled) and return it as
        the store has it; `timeout` seconds at most (None: no limit), else `WaitTimeout`.

        A wait is woken by the finished bell: workers, the scheduler and a cancel announce
        each job they finish through the coordinator (Redis, or this process's own bell).
        It also looks at the store after 10 ms, then at doubling intervals of up to
        `WAIT_POLL_S_MAX`: without Redis, or when an announcement was lost, it finds out
        at worst that much later."""
        job_id = _job_id(job)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        coordinator = self.coordinator
        mark = _finished_mark(coordinator)  # before the first look: no announcement slips by
        pause_s = WAIT_POLL_S_MIN
        while True:
            found = self.store.get(job_id)
            if found.state.is_terminal:
                return found
            left_s = math.inf if deadline is None else deadline - time.monotonic()
            if left_s <= 0:
                raise WaitTimeout(found)
            step_s = min(pause_s, left_s)
            pause_s = min(2 * pause_s, WAIT_POLL_S_MAX)
            if coordinator is not None and mark is not None:
                try:
                    mark = coordinator.wait_finished([job_id], after=mark, timeout_s=step_s).mark
                    continue
                except CoordinatorUnavailable:
                    mark = None  # polling only, from now on
            time.sleep(step_s)

    def list_jobs(
        self,
        *,
        states: Iterable[JobState | str] = (),
        queues: Iterable[str] = (),
        tasks: Iterable[str] = (),
        limit: int = 100,
    ) -> JobPage:
        return self.store.list_jobs(
            JobQuery(
                filter=JobFilter(
                    states=frozenset(JobState(s) for s in states),
                    queues=frozenset(queues),
                    tasks=frozenset(tasks),
                ),
                limit=limit,
            )
        )


__all__ = ["App", "Bound", "Jitter", "Options", "Registry", "RetryPolicy", "Task", "WaitTimeout"]
