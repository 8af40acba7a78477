"""Prometheus metrics, gathered through the ports at scrape time.

The API process runs no jobs, so it counts nothing itself: each scrape asks the store and
the coordinator what they know now. Every gunicorn worker answers the same (they share the
store), so no multi-process aggregation is needed. What each metric means and where it
comes from is listed in `METRICS` (and in docs/api.md).

A part that cannot be read (the store or the coordinator is unavailable, or does not answer
within 2 s) is left out of that scrape, and `taskyard_up{component=...}` says so; the
scrape itself still succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from taskyard.domain.errors import CoordinatorUnavailable, StoreUnavailable
from taskyard.domain.model import RUN_S_BUCKETS, AttemptTotals, JobState, Outcome, QueueInfo
from taskyard.domain.ports import Leadership, SchedulerInfo, WorkerInfo
from taskyard.domain.schedules import Schedule
from taskyard.entrypoints.api.probes import Deadline, NoAnswer, Probe
from taskyard.entrypoints.api.services import Services

log = logging.getLogger("taskyard.api")


METRICS: dict[str, str] = {
    "taskyard_up": "1 when the component (store, coordinator) answered this scrape, else 0",
    "taskyard_jobs": "jobs by queue and state, counted by the store (JobStore.queues)",
    "taskyard_queue_paused": "1 while a queue is paused (JobStore.queues)",
    "taskyard_claim_lag_seconds": "claim latency now: how long the oldest due job of the queue "
    "has waited to be claimed, 0 when none waits (JobStore.queues, oldest_queued_age)",
    "taskyard_queue_running": "jobs of the queue running with a lease not yet expired: what "
    "its concurrency limit counts (JobStore.queues, usage)",
    "taskyard_queue_started_in_window": "jobs of the queue started within its rate limit's "
    "period; only for a queue with a rate limit (JobStore.queues, usage)",
    "taskyard_queue_concurrency_limit": "the queue's concurrency limit; only where one is set "
    "(JobStore.queues, limits)",
    "taskyard_queue_key_concurrency_limit": "the queue's limit per concurrency key; only where "
    "one is set (JobStore.queues, limits)",
    "taskyard_queue_rate_limit_starts": "starts the queue's rate limit allows per period; only "
    "where one is set (JobStore.queues, limits)",
    "taskyard_queue_rate_limit_period_seconds": "the period of the queue's rate limit "
    "(JobStore.queues, limits)",
    "taskyard_queue_key_rate_limit_starts": "starts the queue's rate limit per concurrency key "
    "allows per period; only where one is set (JobStore.queues, limits)",
    "taskyard_queue_key_rate_limit_period_seconds": "the period of that limit "
    "(JobStore.queues, limits)",
    "taskyard_queue_weight": "the queue's weight, its share between queues with due jobs "
    "(JobStore.queues, limits)",
    "taskyard_attempts": "attempts that ended, by outcome, since the store began "
    "(JobStore.attempt_totals)",
    "taskyard_attempts_running": "attempts running now (JobStore.attempt_totals)",
    "taskyard_attempt_run_seconds": "run time of attempts whose worker reported an end: "
    "succeeded, failed, timeout, cancelled (JobStore.attempt_totals)",
    "taskyard_schedule_fires": "fires of each schedule since it was created, by outcome: "
    "enqueued, missed (its catch-up policy dropped it), overlap_skipped (JobStore.schedules)",
    "taskyard_schedule_fire_lag_seconds": "from each enqueued fire's time to its enqueue, "
    "by schedule: sum and count (JobStore.schedules)",
    "taskyard_schedule_next_fire_timestamp_seconds": "when each unpaused schedule fires "
    "next, Unix seconds by the store's clock (JobStore.schedules)",
    "taskyard_workers_alive": "workers that heartbeated within their registry TTL "
    "(Coordinator.workers)",
    "taskyard_worker_slots": "sum of the live workers' concurrency (Coordinator.workers)",
    "taskyard_schedulers_alive": "live schedulers (Coordinator.schedulers)",
    "taskyard_leader_term": "term of the scheduler leader lease; absent while no scheduler "
    "leads (Coordinator.leader)",
}


class PortsCollector(Collector):
    """Reads the store and the coordinator through bounded probes (`probes.py`): a part
    that does not answer within `PROBE_TIMEOUT_S` is left out like one that is down."""

    def __init__(self, services: Services, *, run_s_buckets: Iterable[float] = RUN_S_BUCKETS):
        self.services = services
        self.run_s_buckets = tuple(run_s_buckets)
        self._store_probe = Probe("metrics-store", self._read_store)
        self._coordinator_probe = (
            Probe("metrics-coordinator", self._read_coordinator)
            if services.coordinator is not None
            else None
        )

    def _read_store(self) -> tuple[list[QueueInfo], AttemptTotals, list[Schedule]]:
        store = self.services.store
        return (
            store.queues(),
            store.attempt_totals(run_s_buckets=self.run_s_buckets),
            store.schedules(),
        )

    def _read_coordinator(
        self,
    ) -> tuple[list[WorkerInfo], list[SchedulerInfo], Leadership | None]:
        coordinator = self.services.coordinator
        assert coordinator is not None
        return coordinator.workers(), coordinator.schedulers(), coordinator.leader()

    def collect(self) -> Iterator[Metric]:
        deadline = Deadline()
        store = self._store_probe.start()
        coordinator = self._coordinator_probe.start() if self._coordinator_probe else None
        up = GaugeMetricFamily("taskyard_up", METRICS["taskyard_up"], labels=["component"])
        try:
            store_metrics = list(self._store_metrics(*deadline.wait(store)))
            up.add_metric(["store"], 1)
        except (StoreUnavailable, NoAnswer) as exc:
            log.warning("metrics: store unavailable: %s", exc)
            store_metrics = []
            up.add_metric(["store"], 0)
        coordinator_metrics: list[Metric] = []
        if coordinator is not None:
            try:
                coordinator_metrics = list(self._coordinator_metrics(*deadline.wait(coordinator)))
                up.add_metric(["coordinator"], 1)
            except (CoordinatorUnavailable, NoAnswer) as exc:
                log.warning("metrics: coordinator unavailable: %s", exc)
                up.add_metric(["coordinator"], 0)
        yield up
        yield from store_metrics
        yield from coordinator_metrics

    def _store_metrics(
        self, queues: list[QueueInfo], totals: AttemptTotals, schedules: list[Schedule]
    ) -> Iterator[Metric]:
        yield from _schedule_metrics(schedules)
        jobs = GaugeMetricFamily(
            "taskyard_jobs", METRICS["taskyard_jobs"], labels=["queue", "state"]
        )
        paused = GaugeMetricFamily(
            "taskyard_queue_paused", METRICS["taskyard_queue_paused"], labels=["queue"]
        )
        lag = GaugeMetricFamily(
            "taskyard_claim_lag_seconds", METRICS["taskyard_claim_lag_seconds"], labels=["queue"]
        )
        for info in queues:
            for state in JobState:
                jobs.add_metric([info.name, state.value], info.counts.get(state, 0))
            paused.add_metric([info.name], 1 if info.paused else 0)
            lag.add_metric([info.name], info.oldest_queued_age_s or 0.0)
        yield jobs
        yield paused
        yield lag
        yield from _flow_metrics(queues)

        ended = CounterMetricFamily(
            "taskyard_attempts", METRICS["taskyard_attempts"], labels=["outcome"]
        )
        for outcome in Outcome:
            if outcome is not Outcome.RUNNING:
                ended.add_metric([outcome.value], totals.by_outcome.get(outcome, 0))
        yield ended
        yield GaugeMetricFamily(
            "taskyard_attempts_running",
            METRICS["taskyard_attempts_running"],
            value=totals.by_outcome.get(Outcome.RUNNING, 0),
        )
        buckets = [
            (_bound(bound), float(count))
            for bound, count in zip(totals.run_s_buckets, totals.run_s_counts, strict=True)
        ]
        buckets.append(("+Inf", float(totals.run_s_count)))
        yield HistogramMetricFamily(
            "taskyard_attempt_run_seconds",
            METRICS["taskyard_attempt_run_seconds"],
            buckets=buckets,
            sum_value=totals.run_s_sum_s,
        )

    def _coordinator_metrics(
        self,
        workers: list[WorkerInfo],
        schedulers: list[SchedulerInfo],
        leader: Leadership | None,
    ) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "taskyard_workers_alive", METRICS["taskyard_workers_alive"], value=len(workers)
        )
        yield GaugeMetricFamily(
            "taskyard_worker_slots",
            METRICS["taskyard_worker_slots"],
            value=sum(w.concurrency for w in workers),
        )
        yield GaugeMetricFamily(
            "taskyard_schedulers_alive", METRICS["taskyard_schedulers_alive"], value=len(schedulers)
        )
        if leader is not None:
            yield GaugeMetricFamily(
                "taskyard_leader_term", METRICS["taskyard_leader_term"], value=leader.term
            )


def _flow_metrics(queues: list[QueueInfo]) -> Iterator[Metric]:
    """Each queue's limits and what it uses of them, labelled by queue only: a concurrency
    key is never a label, so the number of series follows the number of queues."""

    def gauge(name: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, METRICS[name], labels=["queue"])

    running, started = gauge("taskyard_queue_running"), gauge("taskyard_queue_started_in_window")
    weight = gauge("taskyard_queue_weight")
    limits = {
        name: gauge(f"taskyard_queue_{name}")
        for name in ("concurrency_limit", "key_concurrency_limit")
    }
    rates = {
        name: (
            gauge(f"taskyard_queue_{name}_starts"),
            gauge(f"taskyard_queue_{name}_period_seconds"),
        )
        for name in ("rate_limit", "key_rate_limit")
    }
    for info in queues:
        label, set_limits = [info.name], info.limits
        running.add_metric(label, info.usage.running)
        if info.usage.started_in_window is not None:
            started.add_metric(label, info.usage.started_in_window)
        weight.add_metric(label, set_limits.weight)
        for name, family in limits.items():
            value = getattr(set_limits, name)
            if value is not None:
                family.add_metric(label, value)
        for name, (count, period) in rates.items():
            rate = getattr(set_limits, name)
            if rate is not None:
                count.add_metric(label, rate.count)
                period.add_metric(label, rate.period_s)
    yield running
    yield started
    yield from limits.values()
    for count, period in rates.values():
        yield count
        yield period
    yield weight


def _schedule_metrics(schedules: list[Schedule]) -> Iterator[Metric]:
    fires = CounterMetricFamily(
        "taskyard_schedule_fires",
        METRICS["taskyard_schedule_fires"],
        labels=["schedule", "outcome"],
    )
    lag = SummaryMetricFamily(
        "taskyard_schedule_fire_lag_seconds",
        METRICS["taskyard_schedule_fire_lag_seconds"],
        labels=["schedule"],
    )
    next_fire = GaugeMetricFamily(
        "taskyard_schedule_next_fire_timestamp_seconds",
        METRICS["taskyard_schedule_next_fire_timestamp_seconds"],
        labels=["schedule"],
    )
    for schedule in schedules:
        counts = schedule.counts
        for outcome, count in (
            ("enqueued", counts.enqueued),
            ("missed", counts.missed),
            ("overlap_skipped", counts.overlap_skipped),
        ):
            fires.add_metric([schedule.name, outcome], count)
        lag.add_metric([schedule.name], count_value=counts.enqueued, sum_value=counts.lag_s_sum)
        if not schedule.paused:
            next_fire.add_metric([schedule.name], schedule.next_fire_at.timestamp())
    yield fires
    yield lag
    yield next_fire


def _bound(value: float) -> str:
    return repr(float(value))


def metrics_registry(services: Services) -> CollectorRegistry:
    """A registry of this app's own (not the process-global one), so that several apps in
    one process (tests) never see each other's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortsCollector(services))
    return registry
