"""Timed faults: one handler per `FaultKind`, looked up in `STRIKES`.

A handler applies the fault to the node it names (or to the world) and answers whether it
struck: a crash of a node that is already down, say, does nothing and is not counted.
Lingering faults (`FaultPlan.lingering`) start at the heal and last to the end (`linger`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial

import attrs

from taskyard.adapters.memory import InMemoryCoordinator
from taskyard.simulation.faults import FaultAction, FaultKind, Target
from taskyard.simulation.lifecycle import Lifecycle
from taskyard.simulation.loop import EventLoop
from taskyard.simulation.network import Network
from taskyard.simulation.nodes import ClientNode, Node, SchedulerNode, WorkerNode


@attrs.frozen(kw_only=True)
class Stage:
    """What a timed fault acts on."""

    loop: EventLoop
    network: Network
    lifecycle: Lifecycle
    coordinator: InMemoryCoordinator
    lease_ttl_s: float
    nodes: Mapping[str, Node]


Strike = Callable[[Stage, FaultAction, Node | None], bool]
"""Applies one timed fault now (its node looked up, None for a fault of the whole world);
True when it struck."""


def _crash(stage: Stage, action: FaultAction, node: Node | None) -> bool:
    assert node is not None, action
    if not node.up or isinstance(node, ClientNode):
        return False
    stage.lifecycle.crash(node)
    stage.lifecycle.restart_later(node, action.duration_s)
    return True


def _graceful_restart(stage: Stage, action: FaultAction, node: Node | None) -> bool:
    """A worker drains and hands back its leases; a scheduler resigns and unregisters.
    Either comes back after `duration_s`."""
    if isinstance(node, SchedulerNode) and node.up and not node.paused:
        stage.lifecycle.scheduler_stop(node, down_s=action.duration_s)
        return True
    if not isinstance(node, WorkerNode) or not node.up or node.paused or node.stopping:
        return False
    stage.lifecycle.graceful_stop(node, grace_s=max(action.amount, 0.0), down_s=action.duration_s)
    return True


def _pause(stage: Stage, action: FaultAction, node: Node | None) -> bool:
    assert node is not None, action
    return stage.lifecycle.pause(node, action.duration_s)


def _partition(target: Target, stage: Stage, action: FaultAction, node: Node | None) -> bool:
    assert node is not None, action
    network = stage.network
    network.cut(node.name, target)
    if target is Target.STORE:
        network.disturb(node.name, action.duration_s)
    stage.loop.note(node.label, f"PARTITION from the {target.value} for {action.duration_s:.3f} s")
    stage.loop.at(stage.loop.now + action.duration_s, partial(network.uncut, node, target))
    return True


def _coordinator_data_loss(stage: Stage, action: FaultAction, node: Node | None) -> bool:
    stage.coordinator.forget_everything()
    stage.loop.note("world", "COORDINATOR DATA LOSS: leader lease, registries, doorbells gone")
    return True


def _clock_skew(stage: Stage, action: FaultAction, node: Node | None) -> bool:
    assert node is not None, action
    if not action.amount:
        return False
    stage.network.disturb(node.name, abs(action.amount) + stage.lease_ttl_s)
    node.clock.jump(action.amount)
    stage.loop.note(
        node.label, f"CLOCK jumps {action.amount:+.3f} s (now {node.clock.offset_s:+.3f} s off)"
    )
    return True


def _clock_drift(stage: Stage, action: FaultAction, node: Node | None) -> bool:
    assert node is not None, action
    if action.amount == 1.0:
        return False
    node.clock.set_rate(action.amount)
    stage.loop.note(node.label, f"CLOCK runs at rate {action.amount:.4f}")
    return True


def _reaper_late(stage: Stage, action: FaultAction, node: Node | None) -> bool:
    """Every scheduler stops for `duration_s` (a fleet-wide pause: nothing reaps), while
    a worker's heartbeats are lost for `amount` seconds, longer than the lease TTL (they
    time out on a lock, say; its other calls go through): its leases expire, and what it
    reports next reaches the store before any reaper, so the store itself refuses it as
    stale and closes the attempt."""
    if not isinstance(node, WorkerNode) or not node.up or node.paused:
        return False
    for name in sorted(stage.nodes):
        other = stage.nodes[name]
        if isinstance(other, SchedulerNode):
            stage.lifecycle.pause(other, action.duration_s)
    site = "store.heartbeat.unavailable"
    stage.loop.note(node.label, f"{site} on every heartbeat for {action.amount:.3f} s")
    stage.network.disturb(node.name, action.amount)
    stage.network.force(node, site, action.amount)
    return True


def _split_brain(stage: Stage, action: FaultAction, node: Node | None) -> bool:
    stage.network.split_brain_for(action.duration_s)
    stage.loop.note("world", f"SPLIT BRAIN for {action.duration_s:.3f} s: every scheduler leads")
    return True


STRIKES: Mapping[FaultKind, Strike] = {
    FaultKind.CRASH: _crash,
    FaultKind.GRACEFUL_RESTART: _graceful_restart,
    FaultKind.PAUSE: _pause,
    FaultKind.PARTITION_STORE: partial(_partition, Target.STORE),
    FaultKind.PARTITION_COORDINATOR: partial(_partition, Target.COORDINATOR),
    FaultKind.COORDINATOR_DATA_LOSS: _coordinator_data_loss,
    FaultKind.CLOCK_SKEW: _clock_skew,
    FaultKind.CLOCK_DRIFT: _clock_drift,
    FaultKind.SPLIT_BRAIN: _split_brain,
    FaultKind.REAPER_LATE: _reaper_late,
}
"""Every timed fault kind and its handler (the other kinds are sites)."""


def linger(stage: Stage, action: FaultAction, node: Node) -> None:
    """Start a fault on `node` that lasts through the liveness phase."""
    stage.loop.note(node.label, f"LINGERING {action.kind.value}: lasts to the end")
    if action.kind is FaultKind.CRASH:
        if node.up:
            stage.lifecycle.crash(node)
        node.lingering_down = True
        return
    target = Target.STORE if action.kind is FaultKind.PARTITION_STORE else Target.COORDINATOR
    stage.network.cut(node.name, target)
    if target is Target.STORE:
        stage.network.disturb(node.name, math.inf)
