"""The scheduler's logic: hold leadership, fire due schedules, promote due jobs, reap
expired leases, resolve dependencies, prune finished jobs past their retention. Written
once, driven from outside like `Worker`.

A pass ends by asking the store when time alone next changes what a pass could do
(`JobStore.next_wakeup`: a waiting job's `run_at`, a lease's expiry, a schedule's next
fire) and how far that is
from the store's own now; the scheduler sleeps that long by its own clock, or less than
`tick_interval_s` when that comes first. The store's clock stays the authority: a node
clock that runs fast wakes the scheduler early, and that pass promotes nothing the store
does not find due (it asks again); one that runs slow only makes the pass later. A doorbell
(`SCHEDULER_BELL`, rung by whoever makes a job wait on the clock: a delayed enqueue, a
retry) makes the scheduler ask again at once (`bell()`: two reads, no pass), so a due time
shorter than the interval is kept too.

Leadership only decides how fast work moves. Every action is a compare-and-set in the
store, so two schedulers that both believe they lead are harmless, and when the
coordinator cannot be reached a scheduler keeps working (it acts as if it led).
"""

from __future__ import annotations

import logging
from datetime import datetime

import attrs

from taskyard.domain.errors import CoordinatorUnavailable, StoreUnavailable
from taskyard.domain.health import Health, call_optional
from taskyard.domain.ports import Clock, Coordinator, JobStore, Leadership, SchedulerInfo
from taskyard.domain.retention import PRUNE_BATCH_MAX, Retention
from taskyard.domain.schedules import Fired
from taskyard.domain.timefmt import after, seconds_between
from taskyard.domain.worker import REGISTRY_TTL_S_DEFAULT

log = logging.getLogger("taskyard.scheduler")

LEADER_TTL_S_MIN = 1.0
"""The shortest leader lease an operator may set (the leader renews it several times per TTL)."""
PRUNE_EVERY_S_DEFAULT = 10.0
"""A backlog of finished jobs is pruned a batch per pass; otherwise this often."""

STORE_FAILURES_TO_STEP_DOWN = 3
"""A scheduler whose passes failed this many times in a row stops leading (and stops
campaigning) until a pass reaches the store again, so a scheduler that can reach it
takes over: leadership must never keep work from moving."""


@attrs.frozen(kw_only=True)
class SchedulerConfig:
    scheduler_id: str
    leader_ttl_s: float = 10.0
    tick_interval_s: float = 0.5
    """How often the leader promotes and reaps (the reaper runs at least every second)."""
    batch_max: int = 1000
    registry_ttl_s: float = REGISTRY_TTL_S_DEFAULT
    host: str = "localhost"
    pid: int = 0
    retention: Retention = attrs.field(factory=Retention)
    """How long finished jobs are kept (a queue's override in the store wins)."""
    prune_every_s: float = PRUNE_EVERY_S_DEFAULT
    """How often the leader prunes while a prune finds less than a full batch."""
    prune_batch_max: int = PRUNE_BATCH_MAX

    def __attrs_post_init__(self) -> None:
        assert self.leader_ttl_s > 0, self.leader_ttl_s
        assert 0 < self.tick_interval_s <= 1.0, "expired leases are reaped at least every second"
        assert self.batch_max >= 1
        assert self.prune_every_s > 0, self.prune_every_s
        assert 1 <= self.prune_batch_max <= PRUNE_BATCH_MAX, self.prune_batch_max

    @property
    def campaign_every_s(self) -> float:
        return min(self.leader_ttl_s / 3, max(self.tick_interval_s, 0.1))


@attrs.frozen(kw_only=True)
class SchedulerWait:
    until: datetime
    leading: bool


@attrs.frozen(kw_only=True)
class Pass:
    """What one scheduler pass did."""

    promoted: int = 0
    reaped: int = 0
    cancelled: int = 0
    pruned: int = 0
    fired: Fired = attrs.field(factory=Fired)
    """The schedules' fires decided in this pass."""
    full: bool = False
    wakeup_in_s: float | None = None
    """How long after this pass, by the store's clock, time alone next changes what a pass
    could do (None: nothing waits on the clock, or the pass failed or was full)."""


class Scheduler:
    def __init__(
        self,
        *,
        store: JobStore,
        coordinator: Coordinator | None,
        clock: Clock,
        config: SchedulerConfig,
    ) -> None:
        self.store = store
        self.coordinator = coordinator
        self.clock = clock
        self.config = config
        self.leadership: Leadership | None = None
        self.coordinator_health = Health("coordinator")
        self.store_health = Health("store")
        self.last_pass: Pass | None = None
        self._next_campaign = clock.now()
        self._next_pass = clock.now()
        self._next_prune = clock.now()
        self._acting_without_coordinator = False
        self._recheck = False

    def wake(self) -> None:
        """Do a pass on the next tick, whatever the interval says (something changed)."""
        self._next_pass = self.clock.now()

    def bell(self) -> None:
        """The scheduler's bell rang (a job started waiting on the clock): on the next tick,
        ask the store for its next due time, and pass then if that is sooner than planned."""
        self._recheck = True

    @property
    def leading(self) -> bool:
        """True when this scheduler holds the lease, or acts alone because the coordinator
        is unreachable."""
        return self.leadership is not None or self._acting_without_coordinator

    @property
    def stepped_down(self) -> bool:
        """True while the store is out of reach: not leading; passes only probe the store."""
        return self.store_health.failures >= STORE_FAILURES_TO_STEP_DOWN

    def tick(self) -> SchedulerWait:
        now = self.clock.now()
        if now >= self._next_campaign:
            self._campaign(now)
        acting = self.leading or self.stepped_down
        if acting and now >= self._next_pass:
            self.last_pass = self._pass()
            if self.last_pass.full:
                self._next_pass = now
            elif self.store_health.ok:
                self._next_pass = after(now, self.config.tick_interval_s)
                if self.last_pass.wakeup_in_s is not None:
                    # Counted from after the pass by our own clock: only ever later.
                    due = after(self.clock.now(), self.last_pass.wakeup_in_s)
                    self._next_pass = min(self._next_pass, due)
            else:
                self._next_pass = after(now, self.store_health.retry_after_s())
        elif acting and self._recheck and self.store_health.ok:
            self._recheck_wakeup()
        self._recheck = False
        until = self._next_campaign
        if self.leading or self.stepped_down:
            until = min(until, self._next_pass)
        return SchedulerWait(until=until, leading=self.leading)

    def _campaign(self, now: datetime) -> None:
        self._next_campaign = after(now, self.config.campaign_every_s)
        if self.stepped_down:
            self._step_down()
            return
        if self.coordinator is None:
            self._acting_without_coordinator = True
            return
        if self.coordinator_health.resting(now):
            return  # acting alone meanwhile, which is harmless
        was = self.leadership
        try:
            self.leadership = self.coordinator.campaign(
                candidate=self.config.scheduler_id, ttl_s=self.config.leader_ttl_s
            )
            self.coordinator.register_scheduler(
                SchedulerInfo(
                    id=self.config.scheduler_id,
                    host=self.config.host,
                    pid=self.config.pid,
                    last_heartbeat_at=now,
                    leader=self.leadership is not None,
                    term=self.leadership.term if self.leadership else None,
                ),
                ttl_s=self.config.registry_ttl_s,
            )
        except CoordinatorUnavailable as exc:
            self.coordinator_health.down(exc)
            self.coordinator_health.rest(now)
            self.leadership = None
            self._acting_without_coordinator = True
            return
        self.coordinator_health.up()
        self._acting_without_coordinator = False
        if self.leadership is not None and (was is None or was.term != self.leadership.term):
            log.info("leading", extra={"term": self.leadership.term})
            self._next_pass = now
        elif self.leadership is None and was is not None:
            log.info("no longer leading", extra={"term": was.term})

    def _step_down(self) -> None:
        """Give the leader lease up while the store cannot be reached (passes go on, as
        probes: harmless, since every change is a compare-and-set)."""
        self._acting_without_coordinator = False
        if self.leadership is None:
            return
        log.warning("stepping down: the store is unreachable", extra={"term": self.leadership.term})
        self.leadership = None
        if self.coordinator is not None:
            try:
                self.coordinator.resign(candidate=self.config.scheduler_id)
            except CoordinatorUnavailable as exc:
                self.coordinator_health.down(exc)

    def _pass(self) -> Pass:
        """Promote first, and ring the promoted jobs' queues at once: a due job waits on the
        promotion's commit and that ring, not on the rest of the pass (dependencies,
        schedules, the reaper, retention, the next due time)."""
        limit = self.config.batch_max
        coordinator = self.coordinator
        try:
            promoted = self.store.promote_due(limit=limit)
            if promoted.by_queue and coordinator is not None:
                rung = sorted(promoted.by_queue)
                call_optional(
                    self.coordinator_health, self.clock.now(), lambda: coordinator.ring(rung)
                )
            cancelled = self.store.resolve_dependencies(limit=limit)
            fired = self.store.fire_schedules(limit=limit)
            reaped = self.store.reap_expired(limit=limit)
            pruned = self._prune()
            full = (
                promoted.count >= limit
                or len(reaped) >= limit
                or len(cancelled) >= limit
                or fired.more
                or pruned >= self.config.prune_batch_max
            )
            wakeup_in_s = None if full else self._wakeup_in_s()
        except StoreUnavailable as exc:
            self.store_health.down(exc)
            return Pass()
        self.store_health.up()
        queues = set(fired.queues)
        queues.update(job.queue for job in reaped if not job.state.is_terminal)
        finished = [job.id for job in [*cancelled, *reaped] if job.state.is_terminal]
        now = self.clock.now()
        if queues and coordinator is not None:
            call_optional(self.coordinator_health, now, lambda: coordinator.ring(sorted(queues)))
        if finished and coordinator is not None:
            call_optional(
                self.coordinator_health, now, lambda: coordinator.announce_finished(finished)
            )
        return Pass(
            promoted=promoted.count,
            reaped=len(reaped),
            cancelled=len(cancelled),
            pruned=pruned,
            fired=fired,
            full=full,
            wakeup_in_s=wakeup_in_s,
        )

    def _prune(self) -> int:
        """One bounded batch when one is due: at once again while batches come back full
        (a backlog), else after `prune_every_s`."""
        now = self.clock.now()
        if now < self._next_prune:
            return 0
        batch = self.config.prune_batch_max
        pruned = self.store.prune(self.config.retention, limit=batch)
        if pruned < batch:
            self._next_prune = after(now, self.config.prune_every_s)
        return pruned

    def _recheck_wakeup(self) -> None:
        """Bring the next pass forward to the store's next due time (no pass: two reads)."""
        try:
            wakeup_in_s = self._wakeup_in_s()
        except StoreUnavailable as exc:
            self.store_health.down(exc)
            return
        if wakeup_in_s is not None:
            self._next_pass = min(self._next_pass, after(self.clock.now(), wakeup_in_s))

    def _wakeup_in_s(self) -> float | None:
        """Seconds from the store's now to its next wake-up (asked in that order, so the
        span is measured from the later reading: a sleep of it ends no earlier than due)."""
        wakeup = self.store.next_wakeup()
        if wakeup is None:
            return None
        return max(0.0, seconds_between(self.store.now(), wakeup))

    def resign(self) -> None:
        """Leave: give the leader lease up if this scheduler holds it, and take it off the
        list of live schedulers either way (a standby that stops is gone at once too)."""
        if self.coordinator is None:
            return
        leading, self.leadership = self.leadership, None
        try:
            if leading is not None:
                self.coordinator.resign(candidate=self.config.scheduler_id)
            self.coordinator.unregister_scheduler(self.config.scheduler_id)
        except CoordinatorUnavailable as exc:
            self.coordinator_health.down(exc)
