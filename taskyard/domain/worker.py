"""The worker's logic, written once and driven from outside.

`Worker` owns no thread and never sleeps. A driver calls `tick()`; the worker does
whatever is due (report finished handlers, heartbeat its leases, claim work, enforce
timeouts) through the ports and answers with a `Wait`: when to call it next, and
whether a doorbell ring should wake it sooner. Handler outcomes come in through
`handler_finished()`, doorbell rings through `doorbell()`.

* Production (`taskyard.entrypoints.runtime`) runs `tick()` in a control thread,
  handlers in a thread pool, and waits on a threading event set by handler threads
  and by a doorbell thread.
* The simulator calls `tick()` from its event loop at virtual times and delivers
  handler outcomes as events.
* `taskyard.testing` calls it inline, with handlers run synchronously.

Every decision lives here, so all three exercise the same code. Calls to a driver's
`Worker` must not overlap (the production driver holds a lock).

A store call on the report path (`report`, `release`) that fails with anything but
`StoreUnavailable` is not an outage: the store answered, and refused something in the
batch (a bug, a value it cannot hold). The worker confines it to the outcomes it
concerns, so its other leases stay alive and it keeps claiming:

1. the batch is sent again one report at a time, so every other report lands;
2. a report the store refuses on its own is replaced by a failed attempt
   (`REPORT_REFUSED`, naming the error; retried like any failure while attempts remain);
3. if the store refuses that too, the worker stops holding the job: it leaves the
   outbox and is no longer heartbeated, its lease lapses, and the scheduler closes the
   attempt as `worker_lost` and runs the job again (counted against `max_attempts`, so a
   job that always does this ends `dead`). Logged as an error, never silent.

A refused `release` at shutdown leaves that lease to lapse the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

import attrs

from taskyard.domain.catalog import publishable
from taskyard.domain.context import (
    MESSAGE_LEN_MAX,
    CancelReason,
    Flag,
    HandlerResult,
    JobContext,
    Registry,
    Signal,
    error_info,
)
from taskyard.domain.errors import CoordinatorUnavailable, StoreUnavailable
from taskyard.domain.health import REGISTER_REST_S_MAX, Health, call_optional
from taskyard.domain.hooks import AttemptEnd, Ending, Hooks
from taskyard.domain.model import ErrorInfo, Job, JobState, JsonValue, LeaseRef
from taskyard.domain.ports import (
    SCHEDULER_BELL,
    ClaimRequest,
    Clock,
    Coordinator,
    Executor,
    JobStore,
    Random,
    ReportResult,
    ReportStatus,
    TaskRegistry,
    WorkerInfo,
)
from taskyard.domain.timefmt import after, seconds_between
from taskyard.domain.transitions import Report, ReportKind

log = logging.getLogger("taskyard.worker")

LEASE_TTL_S_DEFAULT = 10.0
LEASE_TTL_S_MIN = 1.0
"""The shortest lease an operator may set: a worker extends its leases every quarter of it."""
REPORT_REFUSED = "report_refused"
"""The error type of an attempt whose own report the store refused (not an outage)."""
POLL_INTERVAL_S_DEFAULT = 1.0
POLL_INTERVAL_S_MIN = 0.05
"""The shortest idle poll an operator may set: 20 store reads a second per idle worker."""
REPORT_LINGER_S_DEFAULT = 0.002
"""The linger of a production worker's outcomes (`bootstrap`'s worker runtimes): the outcomes
of the handlers that end within 2 ms share one store call and one commit, while the freed
slots claim again meanwhile. A job's outcome commits up to 2 ms later; nothing else
changes (an outcome in the outbox keeps its lease alive, and one lost with its worker runs
again). `WorkerConfig`'s own default stays 0, for drivers whose clock only moves when
told to (`taskyard.testing`)."""
REGISTRY_TTL_S_DEFAULT = 15.0
PREFETCH_DEFAULT = 0
"""The production default of `prefetch` (`bootstrap`'s worker runtimes, `--prefetch`): off.
A buffered job's attempt is opened at its claim, so a worker killed with jobs in its buffer
charges each an attempt it never ran (a job of `max_attempts=1` would end dead unrun), and
a buffered job handed back adds an attempt record; until the store opens an attempt when
its handler starts, claiming ahead is the operator's choice (`--prefetch 4` about doubles
the drain at the defaults: docs/performance.md, "Prefetch")."""
PREFETCH_HOLD_FRACTION = 0.25
"""A buffered job waits at most this fraction of the lease TTL for a slot; then it is
handed back (`store.release`) so that a slow handler cannot hold it hostage."""
THREAD_CONCURRENCY_DEFAULT = 16
"""The production default of `concurrency` with plain handlers on threads (`--concurrency`,
`TASKYARD_CONCURRENCY`): 16 at once per worker process. A handler waiting on I/O holds no
CPU and no GIL, and a worker claims for all its free slots in one store call and reports
what ended together, so each round of store calls (mostly the statements' own execution,
then a commit) serves up to 16 jobs instead of 4: the peers benchmark's drain went from 931
jobs/s with 4 to 2,428 with 16 in one run (docs/performance.md, "Defaults, and why"). A
CPU-bound handler gains nothing from more threads (the GIL), and `--concurrency` lowers
it."""
PROCESS_CONCURRENCY_DEFAULT = 4
"""The default of `concurrency` with `--pool process`: each slot is a child process with a
whole interpreter of its own, so the default stays small."""
ASYNC_CONCURRENCY_DEFAULT = 100


@attrs.frozen(kw_only=True)
class WorkerConfig:
    worker_id: str
    queues: frozenset[str] | None = None
    """None: every queue."""
    concurrency: int = 4
    """Slots for plain (`def`) handlers. A production worker takes `THREAD_CONCURRENCY_DEFAULT`
    (or `PROCESS_CONCURRENCY_DEFAULT`) from its settings; this default is the drivers' that
    build a config by hand (`taskyard.testing`, the simulator)."""
    async_concurrency: int = ASYNC_CONCURRENCY_DEFAULT
    """Slots for `async def` handlers, which share one event loop (a slot costs a coroutine,
    not a thread, so there are many more)."""
    lease_ttl_s: float = LEASE_TTL_S_DEFAULT
    heartbeat_interval_s: float | None = None
    """None: a quarter of the lease TTL."""
    poll_interval_s: float = POLL_INTERVAL_S_DEFAULT
    """How often an idle worker looks at the store when no doorbell rings."""
    claim_batch_max: int = 100
    report_batch_max: int = 500
    report_linger_s: float = 0.0
    """How long a finished outcome may wait so that more can share its write."""
    registry_ttl_s: float = REGISTRY_TTL_S_DEFAULT
    prefetch: int = 0
    """Per lane, how many claimed jobs may wait in the worker for a slot (leased and
    heartbeated, not started): a claim asks for the free slots plus the room left in this
    buffer. 0: claim no more than the free slots."""
    host: str = "localhost"
    pid: int = 0

    def __attrs_post_init__(self) -> None:
        assert self.concurrency >= 1, self.concurrency
        assert self.async_concurrency >= 1, self.async_concurrency
        assert self.lease_ttl_s > 0, self.lease_ttl_s
        assert self.poll_interval_s > 0, self.poll_interval_s
        assert self.claim_batch_max >= 1
        assert self.report_batch_max >= 1
        assert self.report_linger_s >= 0
        assert self.prefetch >= 0, self.prefetch
        assert self.heartbeat_interval_s is None or 0 < self.heartbeat_interval_s < self.lease_ttl_s

    @property
    def heartbeat_every_s(self) -> float:
        if self.heartbeat_interval_s is not None:
            return self.heartbeat_interval_s
        return self.lease_ttl_s / 4

    @property
    def prefetch_hold_s(self) -> float:
        """How long a buffered job may wait for a slot before it is handed back."""
        return self.lease_ttl_s * PREFETCH_HOLD_FRACTION


@attrs.frozen(kw_only=True)
class Wait:
    """The driver calls `tick()` again at `until` (the worker's own clock), or sooner when a
    doorbell of `queues` rings and `doorbell` is true, or when a handler finishes."""

    until: datetime
    doorbell: bool
    queues: tuple[str, ...] | None


@attrs.define(eq=False)
class _Held:
    job: Job
    context: JobContext
    started_local: datetime
    lease_until_local: datetime
    """Our conservative guess of when the lease lapses, by our own clock."""
    is_async: bool = False
    """Runs in the async lane (an `async def` handler), whose slots are counted apart."""
    reported: bool = False
    """An outcome for this attempt is decided (in the outbox or sent): later results are ignored."""
    handler_done: bool = False


@attrs.define(eq=False)
class _Buffered:
    """A claimed job waiting for a slot: leased (and heartbeated), its handler not started."""

    job: Job
    is_async: bool
    claimed_local: datetime
    lease_until_local: datetime


@attrs.frozen(kw_only=True)
class Lane:
    """Tasks that share a set of slots."""

    is_async: bool
    tasks: frozenset[str]


SignalFactory = Callable[[], Signal]


class Worker:
    def __init__(
        self,
        *,
        store: JobStore,
        coordinator: Coordinator | None,
        clock: Clock,
        rng: Random,
        registry: TaskRegistry,
        executor: Executor,
        config: WorkerConfig,
        make_signal: SignalFactory = Flag,
        hooks: Hooks | None = None,
    ) -> None:
        self.store = store
        self.hooks = hooks if hooks is not None else Hooks()
        """The app's lifecycle hooks (`domain/hooks.py`): called around each attempt."""
        self.coordinator = coordinator
        self.clock = clock
        self.rng = rng
        self.registry = registry
        self.executor = executor
        self.config = config
        self._make_signal = make_signal
        self._held: dict[UUID, _Held] = {}
        self._abandoned: dict[tuple[UUID, int], _Held] = {}
        """Handlers still running for an attempt the worker has since claimed again (the
        old attempt timed out or lost its lease): each keeps its slot until it returns."""
        self._buffer: dict[UUID, _Buffered] = {}
        """Claimed jobs waiting for a slot, oldest first (`WorkerConfig.prefetch`)."""
        self._prefetch_paused: set[bool] = set()
        """Lanes (by `is_async`) whose buffered jobs waited out `prefetch_hold_s`: they claim
        no more than their free slots until one of their handlers ends, so that the jobs
        handed back run elsewhere rather than come straight back here."""
        self._inbox: list[HandlerResult] = []
        self._outbox: dict[UUID, Report] = {}
        self._outbox_since: datetime | None = None
        now = clock.now()
        self._started_at = now
        self._next_heartbeat = now
        self._next_claim = now
        self._next_flush = now
        self._next_register = now
        self._next_release = now
        """When to try again to hand back buffered jobs (after an outage)."""
        self._next_publish: datetime | None = now
        """When to publish the task catalog (None: published, or given up on)."""
        self._register_failed = False
        self._claim_wanted = True
        self._draining = False
        self._lanes_of: frozenset[str] | None = None
        self._lanes: tuple[Lane, ...] = ()
        self.store_health = Health("store")
        self.coordinator_health = Health("coordinator")
        self.claimed_total = 0
        self.reported_total = 0

    # --- inputs from the driver -----------------------------------------------------------

    def handler_finished(self, result: HandlerResult) -> None:
        """A handler ended (on any thread of the driver's; the driver serialises calls)."""
        self._inbox.append(result)

    def doorbell(self) -> None:
        """A doorbell rang: look at the store on the next tick."""
        self._claim_wanted = True

    def stop_claiming(self) -> None:
        """Begin a graceful shutdown: finish what runs, take nothing new."""
        self._draining = True

    # --- what the driver may ask ----------------------------------------------------------

    @property
    def busy_slots(self) -> int:
        """Handlers still running (an abandoned handler holds its slot until it returns)."""
        running = sum(1 for held in self._held.values() if not held.handler_done)
        return running + len(self._abandoned)

    def _busy(self, *, is_async: bool) -> int:
        """Running handlers of one lane (abandoned ones included)."""
        busy = 0
        for held in self._held.values():
            if not held.handler_done and held.is_async == is_async:
                busy += 1
        for held in self._abandoned.values():
            if held.is_async == is_async:
                busy += 1
        return busy

    def lanes(self) -> tuple[Lane, ...]:
        """The lanes this worker's tasks run in: plain handlers in `concurrency` slots,
        `async def` ones in `async_concurrency` slots. A lane without tasks is left out (but
        the plain one when there are no tasks at all)."""
        names = self.registry.names()
        if names != self._lanes_of:
            specs = [spec for name in names if (spec := self.registry.get(name)) is not None]
            in_async = frozenset(spec.name for spec in specs if spec.is_async)
            lanes = []
            if in_async != names or not names:
                lanes.append(Lane(is_async=False, tasks=names - in_async))
            if in_async:
                lanes.append(Lane(is_async=True, tasks=in_async))
            self._lanes, self._lanes_of = tuple(lanes), names
        return self._lanes

    def lane_free_slots(self, lane: Lane) -> int:
        size = self.config.async_concurrency if lane.is_async else self.config.concurrency
        return max(0, size - self._busy(is_async=lane.is_async))

    @property
    def free_slots(self) -> int:
        """Free slots over every lane (a claim takes no more of a lane's jobs than it has)."""
        return sum(self.lane_free_slots(lane) for lane in self.lanes())

    def buffered(self, *, is_async: bool) -> int:
        """Claimed jobs of one lane waiting for a slot."""
        return sum(1 for entry in self._buffer.values() if entry.is_async == is_async)

    def lane_claim_room(self, lane: Lane) -> int:
        """How many jobs a claim for the lane may take: its free slots, plus the room left
        in its buffer (none while its prefetch is paused)."""
        prefetch = 0 if lane.is_async in self._prefetch_paused else self.config.prefetch
        buffered = self.buffered(is_async=lane.is_async)
        return self.lane_free_slots(lane) + max(0, prefetch - buffered)

    @property
    def claim_room(self) -> int:
        return sum(self.lane_claim_room(lane) for lane in self.lanes())

    @property
    def idle(self) -> bool:
        """Nothing running or buffered, nothing to report, nothing to process."""
        return (
            not self._held
            and not self._buffer
            and not self._outbox
            and not self._inbox
            and not self._abandoned
        )

    def held_refs(self) -> list[LeaseRef]:
        """The leases this worker holds: running jobs', then buffered ones'."""
        return [held.job.ref() for held in self._held.values()] + [
            entry.job.ref() for entry in self._buffer.values()
        ]

    def running_job_ids(self) -> tuple[UUID, ...]:
        """The jobs this worker holds a lease on (buffered ones included)."""
        return tuple(sorted({*self._held, *self._buffer}))

    # --- the step -------------------------------------------------------------------------

    def tick(self) -> Wait:
        now = self.clock.now()
        self._take_finished(now)
        if self._buffer:
            self._start_buffered(now)  # before any store call: a freed slot waits for none
        self._enforce_timeouts(now)
        if self._outbox and (
            now >= self._next_flush or len(self._outbox) >= self.config.report_batch_max
        ):
            self._flush(now)
        if now >= self._next_heartbeat and self._holds_leases():
            self._heartbeat(now)
        if self._buffer:
            self._settle_buffer(now)
        if now >= self._next_register or (self._register_failed and self.coordinator_health.ok):
            self._register(now)
        if self._next_publish is not None and now >= self._next_publish:
            self._publish(now)
        if (
            not self._draining
            and self.claim_room > 0
            and (self._claim_wanted or now >= self._next_claim)
        ):
            self._claim(now)
        return self._wait(now)

    def _holds_leases(self) -> bool:
        return bool(self._buffer) or any(self._needs_lease(held) for held in self._held.values())

    def _take_finished(self, now: datetime) -> None:
        inbox, self._inbox = self._inbox, []
        for result in inbox:
            abandoned = self._abandoned.pop((result.ref.job_id, result.ref.attempt), None)
            if abandoned is not None:
                self._prefetch_paused.discard(abandoned.is_async)
                continue  # an attempt given up on and since claimed again: void, slot freed
            held = self._held.get(result.ref.job_id)
            if held is None or held.job.attempt != result.ref.attempt:
                continue
            held.handler_done = True
            self._prefetch_paused.discard(held.is_async)
            if held.reported:
                # Timed out, lost its lease, or was handed back: this late result is void.
                self._forget_if_settled(held)
                continue
            self._queue_report(now, held, self._report_for(held.job, result), result.exception)

    def _report_for(self, job: Job, result: HandlerResult) -> Report:
        delay_s = 0.0
        if result.kind is not ReportKind.SUCCEEDED:
            delay_s = job.backoff.delay_s(attempt=job.attempt, rng=self.rng)
        return Report(
            ref=result.ref,
            kind=result.kind,
            result=result.result,
            error=result.error,
            retryable=result.retryable,
            retry_delay_s=delay_s,
        )

    def _queue_report(
        self, now: datetime, held: _Held, report: Report, exception: BaseException | None = None
    ) -> None:
        if not held.reported:
            self._end_attempt(held, Ending(report.kind.value), report, exception)
        held.reported = True
        self._outbox[held.job.id] = report
        if self._outbox_since is None:
            self._outbox_since = now
            self._next_flush = after(now, self.config.report_linger_s)

    def _end_attempt(
        self,
        held: _Held,
        ending: Ending,
        report: Report | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Tell the hooks how an attempt ended: once per attempt, when its outcome is
        decided (what a hook does never changes it)."""
        if not self.hooks:
            return
        self.hooks.attempt_ended(
            AttemptEnd(
                job=held.job,
                ending=ending,
                result=report.result if report is not None else None,
                error=report.error if report is not None else None,
                exception=exception,
                retryable=report.retryable if report is not None else True,
                duration_s=max(0.0, seconds_between(held.started_local, self.clock.now())),
            )
        )

    def _enforce_timeouts(self, now: datetime) -> None:
        for held in list(self._held.values()):
            timeout_s = held.job.timeout_s
            if held.reported or timeout_s is None:
                continue
            if now >= after(held.started_local, timeout_s):
                held.context.abort(CancelReason.TIMEOUT)
                error = ErrorInfo(
                    type="timeout", message=f"the attempt ran past its timeout of {timeout_s:g} s"
                )
                report = Report(
                    ref=held.job.ref(),
                    kind=ReportKind.TIMEOUT,
                    error=error,
                    retry_delay_s=held.job.backoff.delay_s(attempt=held.job.attempt, rng=self.rng),
                )
                log.info(
                    "attempt timed out",
                    extra={"job_id": str(held.job.id), "attempt": held.job.attempt},
                )
                self._queue_report(now, held, report)

    def _flush(self, now: datetime) -> None:
        pending = list(self._outbox.values())[: self.config.report_batch_max]
        outage: StoreUnavailable | None = None
        try:
            results = self.store.report(pending)
        except StoreUnavailable as exc:
            outage = exc
            results = []
        except Exception as exc:
            if len(pending) > 1:
                log.warning(
                    "the store refused a batch of %d reports (%s); sending them one by one",
                    len(pending),
                    type(exc).__name__,
                )
            results, outage = self._report_apart(pending, exc)
        self._settle_reports(results)
        self._announce(now, results)
        if outage is not None:
            self.store_health.down(outage)
            self._next_flush = after(now, self.store_health.retry_after_s())
            return
        self.store_health.up()
        if self._outbox:
            self._next_flush = now
        else:
            self._outbox_since = None

    def _settle_reports(self, results: Sequence[ReportResult]) -> None:
        for result in results:
            report = self._outbox.pop(result.ref.job_id, None)
            if result.status is ReportStatus.STALE:
                log.warning(
                    "report refused: the lease had passed on",
                    extra={"job_id": str(result.ref.job_id), "attempt": result.ref.attempt},
                )
            held = self._held.get(result.ref.job_id)
            if held is not None and held.job.attempt == result.ref.attempt:
                if (
                    result.status in (ReportStatus.APPLIED, ReportStatus.ALREADY_APPLIED)
                    and result.state is JobState.DEAD
                ):
                    self.hooks.job_dead(held.job, report.error if report is not None else None)
                self._forget_if_settled(held)
        self.reported_total += len(results)

    def _announce(self, now: datetime, results: Sequence[ReportResult]) -> None:
        """Ring the finished bell for the jobs these reports ended (a report answered
        `already_applied` may have ended its job before its answer was lost), and the
        scheduler's bell when one is to be retried."""
        coordinator = self.coordinator
        finished = [
            result.ref.job_id
            for result in results
            if result.status in (ReportStatus.APPLIED, ReportStatus.ALREADY_APPLIED)
            and result.state is not None
            and result.state.is_terminal
        ]
        if finished and coordinator is not None:
            call_optional(
                self.coordinator_health, now, lambda: coordinator.announce_finished(finished)
            )
        retrying = any(
            result.status is ReportStatus.APPLIED and result.state is JobState.RETRYING
            for result in results
        )
        if retrying and coordinator is not None:
            # A retry waits on the clock: the scheduler's bell lets it hear the due time now.
            call_optional(self.coordinator_health, now, lambda: coordinator.ring([SCHEDULER_BELL]))

    def _report_apart(
        self, pending: Sequence[Report], error: Exception
    ) -> tuple[list[ReportResult], StoreUnavailable | None]:
        """Send each report of a batch the store refused with `error` on its own, so that
        one it refuses cannot hold back the others (a batch of one was refused already).
        Stops at an outage (what is left stays in the outbox)."""
        results: list[ReportResult] = []
        for report in pending:
            refused = error
            if len(pending) > 1:
                try:
                    results.extend(self.store.report([report]))
                    continue
                except StoreUnavailable as exc:
                    return results, exc
                except Exception as exc:
                    refused = exc
            if report.error is not None and report.error.type == REPORT_REFUSED:
                self._abandon(report, refused)  # already the replacement: give up on it
                continue
            replacement = self._refused_report(report, refused)
            self._outbox[report.ref.job_id] = replacement
            try:
                results.extend(self.store.report([replacement]))
            except StoreUnavailable as exc:
                return results, exc  # the replacement waits in the outbox
            except Exception as again:
                self._abandon(replacement, again)
        return results, None

    def _refused_report(self, report: Report, exc: Exception) -> Report:
        """A failed attempt in place of a report the store refused: it names the error
        and is retried (or not) as the handler's outcome would have been."""
        cause = error_info(exc)
        delay_s = report.retry_delay_s
        held = self._held.get(report.ref.job_id)
        if report.kind in (ReportKind.SUCCEEDED, ReportKind.CANCELLED) and held is not None:
            delay_s = held.job.backoff.delay_s(attempt=report.ref.attempt, rng=self.rng)
        log.error(
            "the store refused a report; recording the attempt as failed instead",
            extra={
                "job_id": str(report.ref.job_id),
                "attempt": report.ref.attempt,
                "error_type": cause.type,
            },
        )
        message = f"the store refused this attempt's {report.kind.value} report: "
        return Report(
            ref=report.ref,
            kind=ReportKind.FAILED,
            error=ErrorInfo(
                type=REPORT_REFUSED,
                message=(message + f"{cause.type}: {cause.message}")[:MESSAGE_LEN_MAX],
                traceback=cause.traceback,
            ),
            retryable=report.retryable,
            retry_delay_s=delay_s,
        )

    def _abandon(self, report: Report, exc: Exception) -> None:
        """The last resort for a report the store will not take: stop holding the job, so
        that its lease lapses and the scheduler runs it again (`worker_lost`)."""
        self._outbox.pop(report.ref.job_id, None)
        held = self._held.get(report.ref.job_id)
        if held is not None and held.job.attempt == report.ref.attempt:
            held.reported = True
            self._forget_if_settled(held)
        log.error(
            "the store refused this attempt's report twice: its lease is left to lapse, and "
            "the scheduler will run the job again",
            extra={
                "job_id": str(report.ref.job_id),
                "attempt": report.ref.attempt,
                "error_type": type(exc).__name__,
            },
        )

    def _forget_if_settled(self, held: _Held) -> None:
        """Drop a job once its handler returned and its outcome left the outbox."""
        if held.handler_done and held.job.id not in self._outbox:
            self._held.pop(held.job.id, None)

    def _needs_lease(self, held: _Held) -> bool:
        """Running, or its outcome still waits in the outbox: the lease must stay live."""
        return not held.reported or held.job.id in self._outbox

    def _heartbeat(self, now: datetime) -> None:
        refs = [held.job.ref() for held in self._held.values() if self._needs_lease(held)]
        refs += [entry.job.ref() for entry in self._buffer.values()]
        if not refs:
            self._next_heartbeat = after(now, self.config.heartbeat_every_s)
            return
        try:
            statuses = self.store.heartbeat(refs, lease_ttl_s=self.config.lease_ttl_s)
        except StoreUnavailable as exc:
            self.store_health.down(exc)
            self._next_heartbeat = after(now, self.store_health.retry_after_s())
            self._give_up_lapsed(now)
            return
        self.store_health.up()
        self._next_heartbeat = after(now, self.config.heartbeat_every_s)
        for status in statuses:
            entry = self._buffer.get(status.ref.job_id)
            if entry is not None and entry.job.attempt == status.ref.attempt:
                self._heard_buffered(now, entry, held=status.held, cancel=status.cancel_requested)
                continue
            held = self._held.get(status.ref.job_id)
            if held is None or held.job.attempt != status.ref.attempt:
                continue
            if not status.held:
                self._lose(held, CancelReason.LEASE_LOST)
                continue
            held.lease_until_local = after(now, self.config.lease_ttl_s)
            if status.cancel_requested and not held.reported:
                held.context.abort(CancelReason.REQUESTED)

    def _give_up_lapsed(self, now: datetime) -> None:
        """With the store unreachable, a lease we could not extend lapses by our own
        (conservative) reckoning: tell the handler to stop. Reports stay queued; the store
        decides, when it answers, whether they still count."""
        for held in self._held.values():
            if now > held.lease_until_local and not held.context.cancelled:
                held.context.abort(CancelReason.LEASE_LOST)
        for entry in list(self._buffer.values()):
            if now > entry.lease_until_local:
                self._drop_buffered(entry, "its lease lapsed by this worker's clock")

    def _lose(self, held: _Held, reason: CancelReason) -> None:
        held.context.abort(reason)
        if not held.reported:
            self._end_attempt(held, Ending.LEASE_LOST)
        held.reported = True
        self._outbox.pop(held.job.id, None)
        if not self._outbox:
            self._outbox_since = None
        self._forget_if_settled(held)
        log.warning("lease lost", extra={"job_id": str(held.job.id), "attempt": held.job.attempt})

    def _register(self, now: datetime) -> None:
        self._next_register = after(now, min(self.config.heartbeat_every_s, 2.0))
        if self.coordinator is None:
            return
        info = WorkerInfo(
            id=self.config.worker_id,
            host=self.config.host,
            pid=self.config.pid,
            queues=tuple(sorted(self.config.queues or ())),
            concurrency=self.config.concurrency,
            started_at=self._started_at,
            last_heartbeat_at=now,
            running_job_ids=self.running_job_ids(),
        )
        try:
            self.coordinator.register_worker(info, ttl_s=self.config.registry_ttl_s)
        except CoordinatorUnavailable as exc:
            self.coordinator_health.down(exc)
            self.coordinator_health.rest(now, cap_s=REGISTER_REST_S_MAX)
            # Rest, unless another call (the doorbell's wait) finds the coordinator back.
            self._register_failed = True
            self._next_register = max(
                self._next_register, self.coordinator_health.resting_until or now
            )
            return
        self._register_failed = False
        self.coordinator_health.up()

    def _publish(self, now: datetime) -> None:
        """Publish this worker's tasks into the catalog, once (again after an outage): their
        defaults and parameters become those the API and the CLI fill in and check. Sync
        the schedules its code declares (`JobStore.sync_schedules`: the code wins the spec)."""
        tasks = []
        for name in sorted(self.registry.names()):
            spec = self.registry.get(name)
            if spec is not None and publishable(info := spec.info()):
                tasks.append(info)
        declared = self.registry.schedules() if isinstance(self.registry, Registry) else []
        try:
            if tasks:
                self.store.publish_tasks(tasks, worker=self.config.worker_id)
            if declared:
                self.store.sync_schedules(declared)
        except StoreUnavailable as exc:
            self.store_health.down(exc)
            self._next_publish = after(now, self.store_health.retry_after_s())
            return
        except Exception as exc:
            log.error(
                "the store refused this worker's task catalog: submissions through the API "
                "get the defaults of an earlier publication, or none",
                extra={"error_type": type(exc).__name__},
            )
        self._next_publish = None

    def _claim(self, now: datetime) -> None:
        """Claim for each lane with room, no more of its tasks than it has free slots plus
        room in its buffer."""
        full = False
        for lane in self.lanes():
            limit = min(self.lane_claim_room(lane), self.config.claim_batch_max)
            if limit <= 0:
                continue
            claimed = self._claim_lane(now, lane, limit)
            if claimed is None:
                return
            full = full or claimed >= limit
        self._claim_wanted = full
        self._next_claim = after(now, self.config.poll_interval_s)

    def _claim_lane(self, now: datetime, lane: Lane, limit: int) -> int | None:
        """Claim up to `limit` jobs of the lane's tasks and start them: how many it got,
        None at an outage."""
        request = ClaimRequest(
            worker=self.config.worker_id,
            limit=limit,
            lease_ttl_s=self.config.lease_ttl_s,
            queues=self.config.queues,
            tasks=lane.tasks,
        )
        try:
            jobs = self.store.claim(request)
        except StoreUnavailable as exc:
            self.store_health.down(exc)
            self._claim_wanted = False
            self._next_claim = after(now, self.store_health.retry_after_s())
            return None
        self.store_health.up()
        self.claimed_total += len(jobs)
        if jobs and not self._holds_leases():
            # The first leases after an idle spell: the next heartbeat is a full interval away.
            self._next_heartbeat = after(now, self.config.heartbeat_every_s)
        lease_until = after(now, self.config.lease_ttl_s)
        for job in jobs:
            # A job claimed again (its earlier lease here lapsed) replaces its old entry.
            self._buffer.pop(job.id, None)
            self._buffer[job.id] = _Buffered(
                job=job, is_async=lane.is_async, claimed_local=now, lease_until_local=lease_until
            )
        self._start_buffered(now)
        return len(jobs)

    def _start_buffered(self, now: datetime) -> None:
        """Give each free slot the oldest buffered job of its lane, without a store call."""
        if self._draining:
            return  # a stopping worker starts nothing new: its buffer is handed back
        for lane in self.lanes():
            free = self.lane_free_slots(lane)
            if free <= 0:
                continue
            waiting = [e for e in self._buffer.values() if e.is_async == lane.is_async]
            for entry in waiting[:free]:
                del self._buffer[entry.job.id]
                self._start(
                    now, entry.job, is_async=entry.is_async, lease_until=entry.lease_until_local
                )

    def _settle_buffer(self, now: datetime) -> None:
        """Start buffered jobs in freed slots; hand back those a stopping worker holds and
        those that waited out `prefetch_hold_s` (so that a slow handler holds no job
        hostage: the store gives them to a worker with a free slot)."""
        self._start_buffered(now)
        if self._draining:
            due = list(self._buffer.values())
        else:
            hold_s = self.config.prefetch_hold_s
            due = [e for e in self._buffer.values() if now >= after(e.claimed_local, hold_s)]
        if due and now >= self._next_release:
            if not self._draining:
                self._prefetch_paused.update(entry.is_async for entry in due)
            self._release_buffered(now, due)

    def _release_buffered(self, now: datetime, entries: Sequence[_Buffered]) -> None:
        refs = [entry.job.ref() for entry in entries]
        try:
            results = self.store.release(refs)
        except StoreUnavailable as exc:
            self.store_health.down(exc)
            self._next_release = after(now, self.store_health.retry_after_s())
            return
        except Exception:
            results = self._release_apart(refs)
            for entry in entries:  # those it refused (or left at an outage) are left to lapse
                self._buffer.pop(entry.job.id, None)
        else:
            self.store_health.up()
        for result in results:
            answered = self._buffer.get(result.ref.job_id)
            if answered is not None and answered.job.attempt == result.ref.attempt:
                del self._buffer[result.ref.job_id]
        log.info("handed back %d buffered job(s)", len(results))

    def _heard_buffered(self, now: datetime, entry: _Buffered, *, held: bool, cancel: bool) -> None:
        """A heartbeat's answer for a buffered job: extended, lost, or to be cancelled (handed
        back at once: the store ends a job with a cancel request when it is released)."""
        if not held:
            self._drop_buffered(entry, "lease lost")
            return
        entry.lease_until_local = after(now, self.config.lease_ttl_s)
        if cancel:
            self._release_buffered(now, [entry])

    def _drop_buffered(self, entry: _Buffered, why: str) -> None:
        del self._buffer[entry.job.id]
        log.warning(
            "buffered job dropped: %s",
            why,
            extra={"job_id": str(entry.job.id), "attempt": entry.job.attempt},
        )

    def _start(
        self,
        now: datetime,
        job: Job,
        *,
        is_async: bool = False,
        lease_until: datetime | None = None,
    ) -> None:
        """Start the job's handler: its attempt's time (`timeout_s`, the hooks' duration)
        counts from now, whenever its lease was taken (`lease_until`, by our clock)."""
        previous = self._held.get(job.id)
        if previous is not None and not previous.reported:
            self._end_attempt(previous, Ending.LEASE_LOST)
        if previous is not None and not previous.handler_done:
            # Claimed again while the handler of an earlier attempt still runs: keep
            # counting that handler against the slots until it returns.
            previous.context.abort(CancelReason.LEASE_LOST)
            self._abandoned[(job.id, previous.job.attempt)] = previous
        context = JobContext(job, save=self._save_checkpoint, signal=self._make_signal())
        held = _Held(
            job=job,
            context=context,
            started_local=now,
            lease_until_local=lease_until or after(now, self.config.lease_ttl_s),
            is_async=is_async,
        )
        self._held[job.id] = held
        self.hooks.attempt_started(job)
        if self.registry.get(job.task) is None:
            # The claim filters by task name, so this only happens when a task is removed
            # between the claim and here.
            held.handler_done = True
            self._queue_report(
                now,
                held,
                Report(
                    ref=job.ref(),
                    kind=ReportKind.FAILED,
                    error=ErrorInfo(type="unknown_task", message=f"no handler for {job.task!r}"),
                    retryable=True,
                    # Retried after the job's backoff, as any failure is (guarantee 6).
                    retry_delay_s=job.backoff.delay_s(attempt=job.attempt, rng=self.rng),
                ),
            )
            return
        self.executor.start(job, context)

    def _save_checkpoint(self, ref: LeaseRef, state: JsonValue) -> None:
        self.store.checkpoint(ref, state)

    def _wait(self, now: datetime) -> Wait:
        candidates = [self._next_register]
        if self._next_publish is not None:
            candidates.append(self._next_publish)
        can_claim = not self._draining and self.claim_room > 0
        if can_claim:
            candidates.append(now if self._claim_wanted else self._next_claim)
        if self._holds_leases():
            candidates.append(self._next_heartbeat)
        if self._buffer:
            hold_s = 0.0 if self._draining else self.config.prefetch_hold_s
            oldest = min(entry.claimed_local for entry in self._buffer.values())
            candidates.append(max(self._next_release, after(oldest, hold_s)))
        if self._outbox:
            candidates.append(self._next_flush)
        if self._inbox:
            candidates.append(now)
        for held in self._held.values():
            if held.job.timeout_s is not None and not held.reported:
                candidates.append(after(held.started_local, held.job.timeout_s))
        queues = tuple(sorted(self.config.queues)) if self.config.queues is not None else None
        return Wait(until=min(candidates), doorbell=can_claim, queues=queues)

    # --- shutdown -------------------------------------------------------------------------

    def abort_running(self) -> None:
        """Ask every running handler to stop (the grace period is over)."""
        for held in [*self._held.values(), *self._abandoned.values()]:
            if not held.handler_done:
                held.context.abort(CancelReason.SHUTDOWN)

    def release_unfinished(self) -> int:
        """Hand back every lease whose outcome is not decided, so it runs elsewhere at once.
        Returns how many the store took back. Outcomes already decided are flushed first."""
        now = self.clock.now()
        self._take_finished(now)
        if self._outbox:
            self._flush(now)
        buffered = list(self._buffer.values())
        self._buffer.clear()  # handed back below, or left to lapse
        refs = [held.job.ref() for held in self._held.values() if not held.reported]
        refs += [entry.job.ref() for entry in buffered]
        if not refs:
            return 0
        try:
            results = self.store.release(refs)
        except StoreUnavailable as exc:
            self.store_health.down(exc)
            results = []
        except Exception:
            results = self._release_apart(refs)
        released = 0
        for result in results:
            held = self._held.get(result.ref.job_id)
            if held is not None and held.job.attempt == result.ref.attempt:
                if not held.reported:
                    self._end_attempt(held, Ending.HANDED_BACK)
                held.reported = True
                held.context.abort(CancelReason.SHUTDOWN)
                self._forget_if_settled(held)
            if result.status is ReportStatus.APPLIED:
                released += 1
        for held in self._held.values():
            if not held.reported:  # not taken back (the store is unreachable): left to lapse
                self._end_attempt(held, Ending.LEASE_LOST)
                held.reported = True
        return released

    def _release_apart(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        """Hand back each lease on its own; one the store refuses is left to lapse."""
        results: list[ReportResult] = []
        for ref in refs:
            try:
                results.extend(self.store.release([ref]))
            except StoreUnavailable as exc:
                self.store_health.down(exc)
                break
            except Exception as exc:
                log.error(
                    "the store refused to take back a lease: it is left to lapse",
                    extra={
                        "job_id": str(ref.job_id),
                        "attempt": ref.attempt,
                        "error_type": type(exc).__name__,
                    },
                )
        return results

    def unregister(self) -> None:
        if self.coordinator is None:
            return
        with contextlib.suppress(CoordinatorUnavailable):
            self.coordinator.unregister_worker(self.config.worker_id)

    def pending_reports(self) -> Sequence[Report]:
        return list(self._outbox.values())
