"""The network between the nodes and the shared store and coordinator, with its fault
sites: partitions (a node cut off from the store or the coordinator), named sites that
fire by chance on a call (`store.report.reply_lost`, `doorbell.lost`, ...), requests that
land late, the coordinator's split brain, doorbells on their way to workers, and the
store's refusal of one job of a call (`UnexpectedStoreError`).

`Network` is the `Wire` the fault-injecting wrappers (`taskyard.simulation.adapters`) are
handed. It also remembers which nodes a fault struck and when (`disturb`), so the checker
can tell a bystander of a refusal that lost its lease to the refusal alone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from uuid import UUID

import attrs

from taskyard.adapters.memory import MemoryState
from taskyard.domain.errors import Refusal
from taskyard.domain.model import JobState, LeaseRef
from taskyard.domain.ports import SCHEDULER_BELL
from taskyard.domain.transitions import Report
from taskyard.domain.worker import REPORT_REFUSED
from taskyard.simulation.adapters import Caller, UnexpectedStoreError
from taskyard.simulation.checker import Bystander
from taskyard.simulation.clocks import at_s
from taskyard.simulation.faults import FaultKind, Target, site_kind
from taskyard.simulation.ledger import Ledger
from taskyard.simulation.loop import EventLoop
from taskyard.simulation.nodes import Node, SchedulerNode, WorkerNode
from taskyard.simulation.rand import Streams


class Network:
    def __init__(
        self,
        *,
        loop: EventLoop,
        streams: Streams,
        ledger: Ledger,
        state: MemoryState,
        sites: Mapping[str, float],
        lease_ttl_s: float,
        fault_counts: Counter[FaultKind],
        site_counts: Counter[str],
        exercised: Counter[str],
    ) -> None:
        self._loop = loop
        self._streams = streams
        self._ledger = ledger
        self._state = state
        self._sites = sites
        self._lease_ttl_s = lease_ttl_s
        self._fault_counts = fault_counts
        self._site_counts = site_counts
        self._exercised = exercised
        self._cuts: Counter[tuple[str, Target]] = Counter()
        self._forced: Counter[tuple[str, str]] = Counter()
        """(node, site) -> how many faults make that site fire on every call of the node."""
        self._split_brain_until = -math.inf
        self._refused: dict[tuple[UUID, int], bool] = {}
        """(job, attempt) -> True when every report of the attempt is refused, False when
        only the outcome first sent is (its replacement lands)."""
        self._bystanders: list[tuple[Bystander, str]] = []
        self._disturbed: dict[str, list[tuple[float, float]]] = {}
        """Per node, the spans of true time in which a fault struck it (or its aftermath
        could still cost it a lease)."""
        self.workers: Sequence[WorkerNode] = ()
        """Where doorbells go."""
        self.ring: Callable[[WorkerNode], None] = lambda node: None
        """Delivers a doorbell to a worker (set by the world)."""
        self.schedulers: Sequence[SchedulerNode] = ()
        """Where the scheduler's bell goes."""
        self.bell: Callable[[SchedulerNode], None] = lambda node: None
        """Delivers the scheduler's bell to a scheduler (set by the world)."""

    # --- the Wire protocol ----------------------------------------------------------------

    @property
    def split_brain(self) -> bool:
        return self._loop.clock.t < self._split_brain_until

    def cut_off(self, node: str, target: Target) -> bool:
        return bool(self._cuts) and self._cuts[(node, target)] > 0

    def fire(self, site: str, who: str) -> bool:
        forced = bool(self._forced) and self._forced[(who.split(".", maxsplit=1)[0], site)] > 0
        p = self._sites.get(site)
        if not forced and (not p or self._streams.get(f"site/{site}").random() >= p):
            return False
        self._fault_counts[site_kind(site)] += 1
        self._site_counts[site] += 1
        self._loop.note(who, f"FAULT {site}")
        if site.startswith("store.") and not site.endswith(".unexpected"):
            self.disturb(who.split(".", maxsplit=1)[0], 2 * self._lease_ttl_s)
        return True

    def refuse(self, caller: Caller, op: str, about: Sequence[LeaseRef | Report]) -> None:
        """The refusal fault: raise `UnexpectedStoreError` (nothing written) when the call
        carries a job the store refuses, or when the site fires (then one job of the call
        is chosen, and stays refused)."""
        for item in about:
            ref = item.ref if isinstance(item, Report) else item
            every_report = self._refused.get((ref.job_id, ref.attempt))
            if every_report is None:
                continue
            replaced = (
                isinstance(item, Report)
                and item.error is not None
                and item.error.type == REPORT_REFUSED
            )
            if every_report or not replaced:
                label = f"{self._ledger.job_label(ref.job_id)} #{ref.attempt}"
                self._loop.note(caller.label, f"store refuses {op} of {label} again")
                raise UnexpectedStoreError(f"store.{op}: cannot take what {label} sent")
        if not self.fire(f"store.{op}.unexpected", caller.label):
            return
        rng = self._streams.get("refusals")
        chosen = about[rng.randrange(len(about))]
        ref = chosen.ref if isinstance(chosen, Report) else chosen
        every_report = op != "report" or rng.random() < 0.5
        self._refused[(ref.job_id, ref.attempt)] = every_report
        label = f"{self._ledger.job_label(ref.job_id)} #{ref.attempt}"
        what = "every report of the attempt" if every_report else "this outcome only"
        self._loop.note(caller.label, f"store refuses {op} of {label} ({what})")
        now = self._loop.clock.now()
        for job_id in sorted(self._state.jobs):
            job = self._state.jobs[job_id]
            lease = job.lease
            if (
                (job_id, job.attempt) not in self._refused  # its own refusal, not a bystander
                and job.state is JobState.RUNNING
                and lease is not None
                and lease.worker == caller.node_id
                and lease.expires_at > now
            ):
                bystander = Bystander(
                    job_id=job_id,
                    attempt=job.attempt,
                    worker=caller.node_id,
                    culprit=ref.job_id,
                    struck_at=now,
                    excused=False,
                )
                self._bystanders.append((bystander, caller.name))
        raise UnexpectedStoreError(f"store.{op}: cannot take what {label} sent")

    def deliver_late(self, who: str, op: str, call: Callable[[], object]) -> None:
        """A request its caller gave up on reaches the store later (in the network, so it
        arrives even if the caller has crashed since)."""
        delay = self._streams.get("late").uniform(0.05, 1.5 * self._lease_ttl_s)
        self._loop.at(self._loop.clock.t + delay, partial(self._land_late, who, op, call))

    def _land_late(self, who: str, op: str, call: Callable[[], object]) -> None:
        outcome = "landed"
        try:
            call()
        except Refusal as exc:
            outcome = f"refused ({type(exc).__name__})"
        finally:
            self._ledger.note_commits(f"{who}~")
        self._exercised["late_request"] += 1
        self._loop.note(f"{who}~", f"late store.{op} {outcome}")

    def note_commits(self, who: str) -> None:
        self._ledger.note_commits(who)

    def observe(self, who: str, what: str, job_id: UUID, attempt: int) -> None:
        self._ledger.observe(who, what, job_id, attempt)

    def note(self, who: str, what: str) -> None:
        self._loop.note(who, what)

    def count(self, path: str) -> None:
        self._exercised[path] += 1

    def deliver_doorbells(self, queues: Sequence[str]) -> None:
        rung = set(queues) - {SCHEDULER_BELL}
        rng = self._streams.get("doorbells")
        t = self._loop.clock.t
        if SCHEDULER_BELL in queues:
            self._ring_schedulers()
        for node in self.workers:
            wait = node.wait
            if not rung or not node.up or node.paused or wait is None or not wait.doorbell:
                continue
            if wait.queues is not None and not rung.intersection(wait.queues):
                continue
            if self.cut_off(node.name, Target.COORDINATOR):
                continue
            if self.fire("doorbell.lost", node.label):
                continue
            self._loop.at(t + rng.uniform(0.001, 0.02), partial(self.ring, node), node)
            if self.fire("doorbell.duplicate", node.label):
                self._loop.at(t + rng.uniform(0.02, 0.5), partial(self.ring, node), node)

    def _ring_schedulers(self) -> None:
        """The scheduler's bell: every scheduler up and in reach asks for its next due time
        soon after (no worker wakes for it)."""
        rng = self._streams.get("scheduler-bell")
        t = self._loop.clock.t
        for node in self.schedulers:
            if not node.up or node.paused or self.cut_off(node.name, Target.COORDINATOR):
                continue
            if self.fire("doorbell.lost", node.label):
                continue
            self._loop.at(t + rng.uniform(0.001, 0.02), partial(self.bell, node), node)

    # --- timed faults and healing -----------------------------------------------------------

    def disturb(self, name: str, lasting_s: float) -> None:
        """Something struck node `name` now, for `lasting_s` (see `Bystander.excused`)."""
        t = self._loop.clock.t
        self._disturbed.setdefault(name, []).append((t, t + lasting_s))

    def cut(self, name: str, target: Target) -> None:
        self._cuts[(name, target)] += 1

    def uncut(self, node: Node, target: Target) -> None:
        key = (node.name, target)
        if self._cuts[key] > 0:
            self._cuts[key] -= 1
            if not self._cuts[key]:
                self._loop.note(node.label, f"partition from the {target.value} healed")

    def force(self, node: Node, site: str, duration_s: float) -> None:
        """Make `site` fire on every call of `node` for `duration_s`."""
        self._forced[(node.name, site)] += 1
        self._loop.at(self._loop.clock.t + duration_s, partial(self._unforce, node, site))

    def _unforce(self, node: Node, site: str) -> None:
        key = (node.name, site)
        if self._forced[key] > 0:
            self._forced[key] -= 1
            if not self._forced[key]:
                self._loop.note(node.label, f"{site} over")

    def split_brain_for(self, duration_s: float) -> None:
        self._split_brain_until = max(self._split_brain_until, self._loop.clock.t + duration_s)

    def heal_partitions(self) -> None:
        self._cuts.clear()

    def heal(self) -> None:
        """Every site off, every partition healed, the split brain over."""
        self._sites = {}
        self._cuts.clear()
        self._forced.clear()
        self._split_brain_until = -math.inf

    # --- for the checker ----------------------------------------------------------------

    def judged_bystanders(self) -> Iterator[Bystander]:
        """Each bystander (but those the store later refused themselves), excused when its
        worker's node was struck by anything else from a lease TTL before the refusal until
        the bystander's lease lapsed (or now)."""
        for bystander, name in self._bystanders:
            if (bystander.job_id, bystander.attempt) in self._refused:
                continue  # refused itself later: no longer a bystander
            records = self._state.attempts.get(bystander.job_id, [])
            record = next((a for a in records if a.attempt == bystander.attempt), None)
            start = at_s(bystander.struck_at) - self._lease_ttl_s
            end = at_s(record.lease_expires_at) if record is not None else self._loop.clock.t
            excused = any(
                begin <= end and start <= until for begin, until in self._disturbed.get(name, ())
            )
            yield attrs.evolve(bystander, excused=excused)
