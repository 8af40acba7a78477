"""The production drivers of the domain's `Worker` and `Scheduler`: threads, sleeps and
wake-ups, nothing else. Every decision (what to claim, when to heartbeat, when to poll the
store, what a timeout means) is the domain's; the simulator exercises the same code.

`WorkerRuntime` runs three kinds of threads:

* the **control thread** calls `Worker.tick()` under a lock and sleeps until the answer's
  `until`, or until a handler finishes or a doorbell rings (a `threading.Event`);
* **handler threads** (`ThreadExecutor`) run plain handlers; their `ctx` signals are
  `LazyEvent`s (a `threading.Event` once waited on), so `ctx.wait(s)` really sleeps and
  wakes at once on cancellation. With `pool="process"` each of these threads minds a child
  process instead (`ProcessExecutor`), which is killed at a timeout or a cancel;
* the **event loop thread** (`AsyncExecutor`, started with the first `async def` job) runs
  `async def` handlers as tasks, as many at once as `async_concurrency` allows;
* the **doorbell thread** blocks in `Coordinator.wait()` while the worker can take work,
  and when a doorbell rings it runs a tick itself (the claim starts without a thread
  hand-off).
  When the coordinator is unreachable it backs off (50 ms doubling to 2 s) and tries
  again, forever: the worker keeps polling the store at its `poll_interval_s` meanwhile
  (the domain always polls; the doorbell only makes it sooner), and the moment the
  coordinator answers again the thread is back to waiting on the doorbell. The worker's
  coordinator `Health` warns once when it goes away and once when it is back.

`SchedulerRuntime` runs one thread that calls `Scheduler.tick()` and sleeps until its `until`
(which is the next due time the store named, when that comes before the pass interval),
and, with a coordinator, a **bell thread** that blocks on the scheduler's doorbell
(`SCHEDULER_BELL`) and wakes the loop for a pass at once when a job starts waiting on the
clock.

Neither loop ever dies of an error: store and coordinator errors are handled by the domain,
and anything else is logged with its traceback and retried after a pause.

Usage (what the CLI's worker process does; the composition root builds it)::

    runtime = bootstrap(settings).worker_runtime(registry, worker_id="w1")
    runtime.start()
    ...                          # until SIGTERM
    runtime.stop(grace_s=30)     # finish what runs, hand back the rest
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from types import TracebackType

from taskyard.adapters.executors import AsyncExecutor, LaneExecutor, PlainExecutor, ThreadExecutor
from taskyard.adapters.processes import ProcessExecutor, RegistryLoader
from taskyard.domain.context import HandlerResult
from taskyard.domain.errors import CoordinatorUnavailable
from taskyard.domain.hooks import Hooks
from taskyard.domain.model import Job
from taskyard.domain.ports import (
    SCHEDULER_BELL,
    Clock,
    Coordinator,
    JobStore,
    Random,
    TaskRegistry,
    Upkeep,
)
from taskyard.domain.retention import VACUUM_EVERY_S_DEFAULT, vacuum_due
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from taskyard.domain.timefmt import seconds_between
from taskyard.domain.worker import Wait, Worker, WorkerConfig
from taskyard.entrypoints.logs import log_context

log = logging.getLogger("taskyard.runtime")

SLEEP_MAX_S = 1.0
"""The longest a loop sleeps between ticks whatever `until` says, so a wall clock that
steps backwards cannot stall it."""
DOORBELL_BLOCK_S = 2.0
"""How long one doorbell wait blocks; it is waited on again at once."""
BELL_PAUSE_MIN_S = 0.05
BELL_PAUSE_MAX_S = 2.0
ERROR_PAUSE_S = 1.0
"""The pause after an unexpected error in a loop, before it tries again."""
JOIN_SLACK_S = 5.0
POOLS = ("thread", "process")
"""Where plain handlers run: the `--pool` setting's values."""


_EVENT_LOCK = threading.Lock()


class LazyEvent:
    """A `threading.Event` made only when a handler first waits on it.

    Every job gets a cancellation signal, and nearly every handler only ever asks
    `is_set()` or never looks at it: building a real event (a condition and a lock) for
    each of thousands of jobs a second is waste. `set()` and `is_set()` are a flag; a
    `wait()` makes the event (under a module lock) and re-reads the flag after it exists,
    so a `set()` racing with the first `wait()` is never lost."""

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None

    def set(self) -> None:
        self._flag = True
        event = self._event
        if event is not None:
            event.set()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        event = self._event
        if event is None:
            with _EVENT_LOCK:
                if self._event is None:
                    self._event = threading.Event()
                event = self._event
        if self.is_set():  # set() may have run before the event existed
            event.set()
        return event.wait(timeout)


_handler_started: contextvars.ContextVar[float] = contextvars.ContextVar("taskyard_handler_started")
"""When the handler on this thread started (monotonic seconds), for the finishing line."""


def _sleep_s(clock: Clock, until: datetime) -> float:
    return min(SLEEP_MAX_S, max(0.0, seconds_between(clock.now(), until)))


class WorkerRuntime:
    """Drives one `Worker`. Start it once; end it with `stop(grace_s)` or `kill()`."""

    def __init__(
        self,
        *,
        store: JobStore,
        coordinator: Coordinator | None,
        registry: TaskRegistry,
        config: WorkerConfig,
        clock: Clock,
        rng: Random,
        doorbell_block_s: float = DOORBELL_BLOCK_S,
        hooks: Hooks | None = None,
        pool: str = "thread",
        load_registry: RegistryLoader | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        """`pool`: plain handlers on threads (`thread`) or in child processes (`process`,
        which needs `load_registry`: how a child builds the same tasks; the modules it
        imports are `preload`)."""
        assert doorbell_block_s > 0, doorbell_block_s
        assert pool in POOLS, pool
        self.config = config
        self.clock = clock
        self.coordinator = coordinator
        self._doorbell_block_s = doorbell_block_s
        self._lock = threading.Lock()
        """Serialises every call into `worker` (the domain's rule)."""
        self._wake = threading.Event()
        self._halting = threading.Event()
        self._bell_wanted = threading.Event()
        self._drained = threading.Event()
        self._draining = False
        self._next_tick = self.clock.now()
        """When the control thread means to tick next (it sleeps until then)."""
        self._finished: collections.deque[HandlerResult] = collections.deque()
        """Results of handlers that returned, waiting for the control thread."""
        plain: PlainExecutor
        if pool == "process":
            assert load_registry is not None, "a process pool needs a way to load the tasks"
            plain = ProcessExecutor(
                registry,
                self._handler_finished,
                processes=config.concurrency,
                load_registry=load_registry,
                preload=preload,
                around=self._running_job,
            )
        else:
            plain = ThreadExecutor(
                registry,
                self._handler_finished,
                threads=config.concurrency,
                around=self._running_job,
            )
        self.executor = LaneExecutor(
            registry,
            plain=plain,
            coroutines=AsyncExecutor(registry, self._handler_finished, around=self._running_job),
        )
        self.worker = Worker(
            store=store,
            coordinator=coordinator,
            clock=self.clock,
            rng=rng,
            registry=registry,
            executor=self.executor,
            config=config,
            make_signal=LazyEvent,
            hooks=hooks,
        )
        name = config.worker_id
        self._control = threading.Thread(
            target=self._control_loop, name=f"taskyard-worker-{name}", daemon=True
        )
        self._doorbell: threading.Thread | None = None
        if coordinator is not None:
            self._doorbell = threading.Thread(
                target=self._doorbell_loop, name=f"taskyard-doorbell-{name}", daemon=True
            )
        self._started = False
        self._ended = False
        self.rings_received = 0
        """Doorbell rings that reached this worker (a counter for tests and metrics)."""
        self.doorbell_ok: bool | None = None
        """Whether the last doorbell wait reached the coordinator (None: not tried yet)."""
        self.loop_errors = 0

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> WorkerRuntime:
        assert not self._started, "a runtime starts once"
        self._started = True
        if isinstance(self.executor.plain, ProcessExecutor):
            self.executor.plain.prestart()
        self._control.start()
        if self._doorbell is not None:
            self._doorbell.start()
        return self

    @property
    def running(self) -> bool:
        return self._started and not self._ended

    @property
    def draining(self) -> bool:
        """A graceful stop has begun: nothing new is claimed."""
        return self._draining

    def stop(self, grace_s: float) -> int:
        """Stop claiming, let running handlers finish for up to `grace_s`, then hand every
        lease whose outcome is not decided back to the store, so those jobs run elsewhere
        at once. Returns how many leases the store took back."""
        assert grace_s >= 0, grace_s
        if not self._started or self._ended:
            return 0
        with self._lock:
            self.worker.stop_claiming()
            self._draining = True
        self._wake.set()
        self._drained.wait(grace_s)
        self._halt()
        with self._lock:
            self._feed()
            released = self.worker.release_unfinished()
            self.worker.abort_running()
            self.worker.unregister()
        self.executor.shutdown(wait=False)
        log.info(
            "worker stopped",
            extra={"worker_id": self.config.worker_id, "released": released},
        )
        return released

    def kill(self) -> None:
        """Stop at once, as a crash would: nothing is reported or handed back (the leases
        lapse and the scheduler reaps them); running handlers are told to stop."""
        if not self._started or self._ended:
            return
        self._halt()
        with self._lock:
            self.worker.abort_running()
        self.executor.shutdown(wait=False)

    def _halt(self) -> None:
        """End the control loop (joined: no tick runs after this). The doorbell thread is not
        waited for: it ends when its current wait does (within `doorbell_block_s`), and a
        ring it brings meanwhile only marks the stopped worker's claim as wanted."""
        self._ended = True
        self._halting.set()
        self._wake.set()
        self._bell_wanted.set()
        self._control.join(timeout=JOIN_SLACK_S)

    def __enter__(self) -> WorkerRuntime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(grace_s=0.0 if exc is not None else 10.0)

    # --- the threads ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _running_job(self, job: Job) -> Iterator[None]:
        """Around each handler, on its thread: every line logged meanwhile (the handler's
        own included) names the job, the attempt and this worker."""
        with log_context(job_id=str(job.id), attempt=job.attempt, task=job.task, **self._extra()):
            token = _handler_started.set(time.monotonic())
            log.debug("attempt started", extra={"queue": job.queue})
            try:
                yield
            finally:
                _handler_started.reset(token)

    def _handler_finished(self, result: HandlerResult) -> None:
        if log.isEnabledFor(logging.INFO):
            started = _handler_started.get(None)
            fields: dict[str, object] = {"outcome": result.kind.value}
            if started is not None:
                fields["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            if result.error is not None:
                fields["error_type"] = result.error.type
                fields["error_message"] = result.error.message[:200]
            log.info("handler finished", extra=fields)
        # No lock: a handler thread must never wait for a tick (which may be in the middle
        # of a store call). The control thread hands the results to the worker before its
        # next tick (`_feed`).
        self._finished.append(result)
        self._wake.set()

    def _feed(self) -> None:
        """Pass finished handlers' results to the worker (under `_lock`)."""
        finished = self._finished
        while finished:
            self.worker.handler_finished(finished.popleft())

    def _tick(self) -> Wait | None:
        """One tick of the worker (under `_lock`, held by the caller); None if it failed."""
        try:
            self._feed()
            wait = self.worker.tick()
            drained = self._draining and self.worker.idle
        except Exception:
            self.loop_errors += 1
            log.exception("worker tick failed; trying again", extra=self._extra())
            return None
        if wait.doorbell:
            self._bell_wanted.set()
        else:
            self._bell_wanted.clear()
        if drained:
            self._drained.set()
        return wait

    def _control_loop(self) -> None:
        with log_context(**self._extra()):
            self._control_steps()

    def _control_steps(self) -> None:
        while not self._halting.is_set():
            self._wake.clear()
            with self._lock:
                wait = self._tick()
            if wait is None:
                self._halting.wait(ERROR_PAUSE_S)
                continue
            self._next_tick = wait.until
            delay_s = _sleep_s(self.clock, wait.until)
            if delay_s > 0:
                self._wake.wait(delay_s)

    def _doorbell_loop(self) -> None:
        with log_context(**self._extra()):
            self._doorbell_steps()

    def _doorbell_steps(self) -> None:
        assert self.coordinator is not None
        queues = sorted(self.config.queues) if self.config.queues is not None else None
        health = self.worker.coordinator_health
        while True:
            self._bell_wanted.wait()
            if self._halting.is_set():
                return
            try:
                rung = self.coordinator.wait(queues, timeout_s=self._doorbell_block_s)
            except CoordinatorUnavailable as exc:
                if self._halting.is_set():
                    return  # stopped meanwhile (and maybe the coordinator was closed)
                self.doorbell_ok = False
                with self._lock:
                    health.down(exc)
                    pause_s = health.retry_after_s()
                self._halting.wait(pause_s)
                continue
            except Exception:
                if self._halting.is_set():
                    return
                self.loop_errors += 1
                log.exception("doorbell wait failed; trying again", extra=self._extra())
                self._halting.wait(ERROR_PAUSE_S)
                continue
            self.doorbell_ok = True
            sooner = False
            with self._lock:
                health.up()
                if rung:
                    self.worker.doorbell()
                    wait = None
                    if not self._halting.is_set():
                        # Tick here, at once: the claim starts without waking the control
                        # thread first (a thread hand-off on the pickup path).
                        wait = self._tick()
                    sooner = wait is None or wait.until < self._next_tick
            if rung:
                self.rings_received += 1
                if sooner:
                    self._wake.set()  # the control thread must tick before it planned to
                # Let the handlers this tick started take the interpreter before this
                # thread goes on to register for the next ring.
                time.sleep(0)

    def _extra(self) -> dict[str, str]:
        return {"worker_id": self.config.worker_id}


class SchedulerRuntime:
    """Drives one `Scheduler` on a thread. End it with `stop()` (resigns) or `kill()`."""

    def __init__(
        self,
        *,
        store: JobStore,
        coordinator: Coordinator | None,
        config: SchedulerConfig,
        clock: Clock,
        vacuum_every_s: float = VACUUM_EVERY_S_DEFAULT,
    ) -> None:
        self.config = config
        self.clock = clock
        self.scheduler = Scheduler(
            store=store, coordinator=coordinator, clock=self.clock, config=config
        )
        self.coordinator = coordinator
        self._halting = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._loop, name=f"taskyard-scheduler-{config.scheduler_id}", daemon=True
        )
        self._upkeep = store if isinstance(store, Upkeep) and vacuum_every_s > 0 else None
        self._vacuum_every_s = vacuum_every_s
        self._upkeep_thread = threading.Thread(
            target=self._tidy, name=f"taskyard-upkeep-{config.scheduler_id}", daemon=True
        )
        self.vacuums = 0
        """Vacuums this scheduler ran (PostgreSQL), while it led."""
        self._bell: threading.Thread | None = None
        if coordinator is not None:
            self._bell = threading.Thread(
                target=self._bell_loop,
                name=f"taskyard-scheduler-bell-{config.scheduler_id}",
                daemon=True,
            )
        self._started = False
        self._ended = False
        self.loop_errors = 0
        self.rings_received = 0

    @property
    def leading(self) -> bool:
        """Holds the leader lease (or acts alone while the coordinator is unreachable)."""
        return self.scheduler.leading

    def start(self) -> SchedulerRuntime:
        assert not self._started, "a runtime starts once"
        self._started = True
        self._thread.start()
        if self._upkeep is not None:
            self._upkeep_thread.start()
        if self._bell is not None:
            self._bell.start()
        return self

    @property
    def running(self) -> bool:
        return self._started and not self._ended

    def stop(self) -> None:
        """Stop after the current pass and give the leader lease up, so another scheduler
        takes over at once instead of after the lease's TTL."""
        if not self._started or self._ended:
            return
        self._halt()
        self.scheduler.resign()

    def kill(self) -> None:
        """Stop at once without resigning, as a crash would: the lease lapses by its TTL."""
        if not self._started or self._ended:
            return
        self._halt()

    def _halt(self) -> None:
        self._ended = True
        self._halting.set()
        self._wake.set()
        self._thread.join(timeout=JOIN_SLACK_S)
        if self._upkeep_thread.is_alive():
            self._upkeep_thread.join(timeout=JOIN_SLACK_S)

    def _tidy(self) -> None:
        """While leading, every `vacuum_every_s`: vacuum each busy table whose dead rows
        `vacuum_due` finds worth it. On a thread of its own, so a long vacuum never holds
        up promoting, reaping or pruning."""
        upkeep = self._upkeep
        assert upkeep is not None
        while not self._halting.wait(self._vacuum_every_s):
            if not self.scheduler.leading:
                continue
            try:
                for table, (live, dead) in sorted(upkeep.table_rows().items()):
                    if vacuum_due(live=live, dead=dead) and not self._halting.is_set():
                        upkeep.vacuum(table)
                        self.vacuums += 1
            except Exception:
                log.warning("vacuum failed; trying again later", exc_info=True)

    def __enter__(self) -> SchedulerRuntime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _loop(self) -> None:
        with log_context(scheduler_id=self.config.scheduler_id):
            self._steps()

    def _steps(self) -> None:
        while not self._halting.is_set():
            self._wake.clear()
            try:
                with self._lock:
                    wait = self.scheduler.tick()
            except Exception:
                self.loop_errors += 1
                log.exception(
                    "scheduler tick failed; trying again",
                    extra={"scheduler_id": self.config.scheduler_id},
                )
                self._halting.wait(ERROR_PAUSE_S)
                continue
            delay_s = _sleep_s(self.clock, wait.until)
            if delay_s > 0:
                self._wake.wait(delay_s)

    def _bell_loop(self) -> None:
        with log_context(scheduler_id=self.config.scheduler_id):
            self._bell_steps()

    def _bell_steps(self) -> None:
        """Wait on the scheduler's doorbell; a ring makes the next pass happen now. An
        unreachable coordinator is retried after a pause (50 ms doubling to 2 s): the
        passes go on at their interval meanwhile."""
        assert self.coordinator is not None
        pause_s = BELL_PAUSE_MIN_S
        while not self._halting.is_set():
            try:
                rung = self.coordinator.wait([SCHEDULER_BELL], timeout_s=DOORBELL_BLOCK_S)
            except Exception as exc:
                if self._halting.is_set():
                    return
                if not isinstance(exc, CoordinatorUnavailable):
                    self.loop_errors += 1
                    log.exception("scheduler bell wait failed; trying again")
                self._halting.wait(pause_s)
                pause_s = min(pause_s * 2, BELL_PAUSE_MAX_S)
                continue
            pause_s = BELL_PAUSE_MIN_S
            if rung:
                self.rings_received += 1
                with self._lock:
                    self.scheduler.bell()
                self._wake.set()
