"""What can go wrong: the fault kinds, the named sites where a fault fires by chance, and
the timed fault actions of a run.

A `FaultPlan` is a plain value: the timed actions (crash this node at 12.5 s, partition
that one from the store for 8 s, ...) and the probability of each switched-on site
(`store.report.reply_lost`: 0.04). A run draws its plan from its seed
(`taskyard.simulation.profiles`); a hypothesis test builds plans directly and shrinks them.

To add a fault: add a `FaultKind`, then either a site (`site_kind` maps it to its kind;
the adapter wrapper or the executor calls `Network.fire(site)` at the point where it
strikes) or an action kind (a handler in `taskyard.simulation.actions.STRIKES`), and let
a profile draw it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs


class FaultKind(enum.StrEnum):
    CRASH = "crash"
    """A worker or scheduler dies (memory lost, leases abandoned) and is rebuilt later."""
    GRACEFUL_RESTART = "graceful_restart"
    """A worker stops claiming, hands back its unfinished leases, and comes back later."""
    PAUSE = "pause"
    """A whole process stops (a GC pause, SIGSTOP) for longer than the lease TTL."""
    PARTITION_STORE = "partition_store"
    PARTITION_COORDINATOR = "partition_coordinator"
    COORDINATOR_DATA_LOSS = "coordinator_data_loss"
    CLOCK_SKEW = "clock_skew"
    """A node's clock is off by some seconds (from the start, or after a jump)."""
    CLOCK_DRIFT = "clock_drift"
    """A node's clock runs fast or slow."""
    SPLIT_BRAIN = "split_brain"
    """For a while, the coordinator tells every scheduler that it leads."""
    HOOK_FAILURE = "hook_failure"
    """A lifecycle hook raises (`hook.fail`): logged and ignored, the job unchanged."""
    REAPER_LATE = "reaper_late"
    """Every scheduler pauses (nothing reaps) while a worker's heartbeats are lost for
    longer than the lease TTL: its next report reaches the store between the lease's
    expiry and the reaper, and is refused as stale by the store itself."""
    STORE_UNAVAILABLE = "store_unavailable"
    """A store call fails before it reaches the store: nothing is written."""
    AMBIGUOUS_COMMIT = "ambiguous_commit"
    """A store call is applied, but its caller sees `StoreUnavailable`."""
    DELAYED_COMMIT = "delayed_commit"
    """A store call times out for its caller (`StoreUnavailable`) but reaches the store
    later, perhaps after the caller retried it or its lease passed on."""
    DOORBELL_LOST = "doorbell_lost"
    DOORBELL_DUPLICATE = "doorbell_duplicate"
    HANDLER_FAILURE = "handler_failure"
    HANDLER_SLOW = "handler_slow"
    HANDLER_TIMEOUT = "handler_timeout"
    """A handler runs past the job's timeout and ignores the request to stop."""
    STORE_REFUSAL = "store_refusal"
    """A store call raises an unexpected error (not `StoreUnavailable`) for one job: a
    value the store cannot hold, or a bug. Nothing is written. Either only that outcome
    is refused (its replacement lands), or every report of that attempt is."""


STORE_WRITES: tuple[str, ...] = (
    "enqueue",
    "claim",
    "heartbeat",
    "checkpoint",
    "report",
    "release",
    "promote_due",
    "reap_expired",
    "resolve_dependencies",
    "prune",
    "cancel",
    "retry",
    "reschedule",
)
STORE_READS: tuple[str, ...] = ("get", "list_jobs", "attempts")
REFUSABLE: tuple[str, ...] = ("report", "release")
"""The worker's calls about a given job's outcome, where a store may refuse one job."""

SITES: tuple[str, ...] = (
    *(f"store.{op}.unavailable" for op in STORE_WRITES + STORE_READS),
    *(f"store.{op}.reply_lost" for op in STORE_WRITES),
    *(f"store.{op}.delayed" for op in STORE_WRITES),
    "doorbell.lost",
    "doorbell.duplicate",
    "handler.fail",
    "handler.slow",
    "handler.hang",
    *(f"store.{op}.unexpected" for op in REFUSABLE),
    "hook.fail",
)
"""Every named site where a fault may fire by chance during a call."""

_SITE_KINDS: Mapping[str, FaultKind] = {
    "doorbell.lost": FaultKind.DOORBELL_LOST,
    "doorbell.duplicate": FaultKind.DOORBELL_DUPLICATE,
    "handler.fail": FaultKind.HANDLER_FAILURE,
    "handler.slow": FaultKind.HANDLER_SLOW,
    "handler.hang": FaultKind.HANDLER_TIMEOUT,
    "hook.fail": FaultKind.HOOK_FAILURE,
}


def site_kind(site: str) -> FaultKind:
    if site.endswith(".unavailable"):
        return FaultKind.STORE_UNAVAILABLE
    if site.endswith(".reply_lost"):
        return FaultKind.AMBIGUOUS_COMMIT
    if site.endswith(".delayed"):
        return FaultKind.DELAYED_COMMIT
    if site.endswith(".unexpected"):
        return FaultKind.STORE_REFUSAL
    return _SITE_KINDS[site]


class Target(enum.StrEnum):
    STORE = "store"
    COORDINATOR = "coordinator"


@attrs.frozen(kw_only=True)
class FaultAction:
    """One timed fault. `duration_s` is how long it lasts (down time after a crash, the
    pause, the partition, the split brain); `amount` is a clock jump in seconds or a
    clock rate."""

    at_s: float
    kind: FaultKind
    node: str | None = None
    duration_s: float = 0.0
    amount: float = 0.0

    def __attrs_post_init__(self) -> None:
        assert self.at_s >= 0, self.at_s
        assert self.duration_s >= 0, self.duration_s

    def describe(self) -> str:
        where = f" {self.node}" if self.node else ""
        extra = ""
        if self.kind is FaultKind.CLOCK_SKEW:
            extra = f" {self.amount:+.3f} s"
        elif self.kind is FaultKind.CLOCK_DRIFT:
            extra = f" rate {self.amount:.4f}"
        elif self.kind is FaultKind.REAPER_LATE:
            extra = f" for {self.amount:.3f} s, schedulers for {self.duration_s:.3f} s"
        elif self.duration_s:
            extra = f" for {self.duration_s:.3f} s"
        return f"{self.at_s:.3f} {self.kind.value}{where}{extra}"


LEADER = "leader"
"""As a lingering fault's node: whichever scheduler leads when the world heals."""
EVERYONE = "*"

LINGERING_KINDS = frozenset(
    {FaultKind.CRASH, FaultKind.PARTITION_STORE, FaultKind.PARTITION_COORDINATOR}
)


@attrs.frozen(kw_only=True)
class FaultPlan:
    actions: tuple[FaultAction, ...] = ()
    sites: Mapping[str, float] = attrs.field(factory=dict)
    """Switched-on sites and the probability that each fires on a call."""
    lingering: tuple[FaultAction, ...] = ()
    """Faults that start when the rest heals and never end. The guarantees still promise
    every job an end as long as some scheduler and a worker for every queue can reach the
    store, so only such faults may linger: a crashed worker or scheduler that never comes
    back, the leader (`LEADER`) cut off from the store, the coordinator gone for everyone
    (`EVERYONE`)."""

    def __attrs_post_init__(self) -> None:
        for site, p in self.sites.items():
            assert site in SITES, f"unknown fault site {site!r}"
            assert 0 <= p <= 1, (site, p)
        for action in self.lingering:
            assert action.kind in LINGERING_KINDS, action

    def describe(self) -> list[str]:
        lines = [action.describe() for action in sorted(self.actions, key=_action_key)]
        lines.extend(f"site {site} p={p:.3f}" for site, p in sorted(self.sites.items()))
        lines.extend(
            f"lingering {action.kind.value} {action.node}"
            for action in sorted(self.lingering, key=_action_key)
        )
        return lines


def _action_key(action: FaultAction) -> tuple[float, str, str]:
    return (action.at_s, action.kind.value, action.node or "")


NO_FAULTS = FaultPlan()
